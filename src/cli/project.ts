import { loadConfig, type LoadOptions } from '../config/load.js';
import type { Config } from '../config/types.js';
import type { CommandContext } from './command.js';

/** Loads the project's config and tells the user its warnings once. */
export async function projectConfig(ctx: CommandContext, opts?: LoadOptions): Promise<Config> {
  const { config, warnings } = await loadConfig(ctx.cwd, opts);
  for (const w of warnings) ctx.log.warn(w);
  return config;
}
