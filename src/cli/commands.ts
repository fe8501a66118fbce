import type { Command } from './command.js';

/**
 * Each command's module, loaded only when that command runs: `hash` then
 * never loads the pipeline, the daemon or the registry client, which is
 * most of the CLI's start-up (about 60 of 100 ms of CPU here).
 */
const LOADERS: Record<string, () => Promise<Command>> = {
  init: async () => (await import('./init.js')).initCommand,
  hash: async () => (await import('./hash.js')).hashCommand,
  builder: async () => (await import('./builder.js')).builderCommand,
  build: async () => (await import('./build.js')).buildCommand,
  pull: async () => (await import('./pull.js')).pullCommand,
  run: async () => (await import('./run.js')).runCommand,
  watch: async () => (await import('./watch.js')).watchCommand,
  status: async () => (await import('./status.js')).statusCommand,
  cache: async () => (await import('./cache.js')).cacheCommand,
};

/** Every command's name, in the order `--help` lists them. */
export const COMMAND_NAMES: readonly string[] = Object.keys(LOADERS);

/** The command called `name`, or null when there is none. */
export function loadCommand(name: string): Promise<Command> | null {
  return Object.hasOwn(LOADERS, name) ? LOADERS[name]!() : null;
}

/** Every command, in the order `--help` lists them (loads them all). */
export function loadCommands(): Promise<Command[]> {
  return Promise.all(COMMAND_NAMES.map((n) => LOADERS[n]!()));
}
