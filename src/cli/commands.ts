import type { Command } from './command.js';
import { hashCommand } from './hash.js';
import { initCommand } from './init.js';
import { builderCommand } from './builder.js';
import { buildCommand } from './build.js';
import { pullCommand } from './pull.js';
import { runCommand } from './run.js';
import { watchCommand } from './watch.js';
import { statusCommand } from './status.js';
import { cacheCommand } from './cache.js';

/** Every command, in the order `--help` lists them. */
export const COMMANDS: Command[] = [initCommand, hashCommand, builderCommand, buildCommand, pullCommand, runCommand, watchCommand, statusCommand, cacheCommand];
