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

import type { ConfigInput } from './config/types.js';
import type { Plugin } from './hooks.js';
export type { ConfigInput };

/**
 * Types a plugin for editors and tsc, as Vite's and Rollup's helpers do;
 * returns its argument unchanged. Give it the plugin object, or a factory
 * that nixdocker calls with the options from the config entry
 * (`["my-plugin", { ... }]`): `export default definePlugin((options: { file?: string }) => ({ name, apply }))`.
 */
export function definePlugin<P extends Plugin>(plugin: P): P;
export function definePlugin<O extends object = Record<string, unknown>>(factory: (options: O) => Plugin | Promise<Plugin>): (options: O) => Plugin | Promise<Plugin>;
export function definePlugin(plugin: unknown): unknown {
  return plugin;
}

/**
 * Types a config file written as code (`nixdocker.config.mjs`, or
 * `nixdocker.config.ts` with `typescript` installed in the project);
 * returns its argument unchanged. Every key is optional, as in
 * `.nixdockerrc.json`: `export default defineConfig({ plugins: ['push'] })`.
 */
export function defineConfig(config: ConfigInput): ConfigInput {
  return config;
}
