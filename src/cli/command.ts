import type { ParseArgsConfig } from 'node:util';
import type { Logger } from '../log.js';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** What every command gets: parsed options, positionals, the project directory and a logger. */
export interface CommandContext {
  cwd: string;
  log: Logger;
  values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  positionals: string[];
  stdout: NodeJS.WritableStream;
  /** Aborted on SIGINT/SIGTERM. */
  signal: AbortSignal;
}

export interface Command {
  name: string;
  /** One line for `nixdocker --help`. */
  summary: string;
  /** Usage lines for `nixdocker CMD --help`. */
  usage: string;
  options?: OptionSpec;
  /** Options end at the first positional; the rest is a command line to pass on. */
  passthrough?: boolean;
  /** Returns the exit code. */
  run(ctx: CommandContext): Promise<number>;
}
