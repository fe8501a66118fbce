import type { ParseArgsConfig } from 'node:util';
import type { Logger } from '../log.js';
import type { ProgressReporter } from './progress.js';
import type { Terminal } from './terminal.js';

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
  /** The bottom of stderr: status lines on a terminal (log lines print above them). */
  terminal: Terminal;
  /** Live progress: status lines on a terminal, debug log events otherwise. */
  progress: ProgressReporter;
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
