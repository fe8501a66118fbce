// The public API: what plugins and programs that embed nixdocker may use.
export { loadConfig } from './config/load.js';
export type { Config, PluginSpec, ImageSettings } from './config/types.js';
export { computeIdentity, type Identity, type InputFile } from './identity.js';
export { UserError } from './errors.js';
export { parsePublish, parseEnvOption, type PublishedPort } from './engine/run-options.js';
export type {
  Plugin,
  PluginHooks,
  PluginContext,
  PluginModule,
  Hooks,
  ImageDescription,
  Destination,
  LayerDescription,
  BuildTrigger,
  BuildVeto,
  BuildFailure,
  PushReport,
  CommandResult,
} from './hooks.js';
