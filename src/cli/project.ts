import { loadConfig, type LoadOptions } from '../config/load.js';
import type { Config } from '../config/types.js';
import { Pipeline } from '../pipeline/pipeline.js';
import type { CommandContext } from './command.js';

/** Loads the project's config and tells the user its warnings once. */
export async function projectConfig(ctx: CommandContext, opts?: LoadOptions): Promise<Config> {
  const { config, warnings } = await loadConfig(ctx.cwd, opts);
  for (const w of warnings) ctx.log.warn(w);
  return config;
}

/**
 * Runs `fn` with the project's pipeline (config, plugins applied) and shuts
 * it down afterwards. Every command that names the current image gets it
 * from `pipeline.identify()`, so the plugins' identity hook applies to all.
 */
export async function withPipeline<T>(ctx: CommandContext, fn: (pipeline: Pipeline) => Promise<T>): Promise<T> {
  const pipeline = await Pipeline.create(await projectConfig(ctx), ctx.log);
  try {
    return await fn(pipeline);
  } finally {
    await pipeline.shutdown();
  }
}
