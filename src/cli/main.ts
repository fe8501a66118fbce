import { parseArgs } from 'node:util';
import os from 'node:os';
import path from 'node:path';
import { isUserError } from '../errors.js';
import { userConfigPath } from '../config/user-config.js';
import { VERSION } from '../version.js';
import { createLogger, type Logger } from '../log.js';
import type { Command, OptionSpec } from './command.js';
import { COMMAND_NAMES, loadCommand, loadCommands } from './commands.js';
import { ProgressReporter } from './progress.js';
import { Terminal } from './terminal.js';

const GLOBAL_OPTIONS: OptionSpec = {
  cwd: { type: 'string', short: 'C' },
  'log-level': { type: 'string' },
  'json-logs': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
};

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

async function usage(): Promise<string> {
  const COMMANDS = await loadCommands();
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    `nixdocker ${VERSION}: build and keep current container images of Nix environments`,
    '',
    'Usage: nixdocker [-C DIR] COMMAND [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Options for every command:',
    '  -C, --cwd DIR        project directory (default: the current directory)',
    '  --log-level LEVEL    trace, debug, info (default), warn, error or silent',
    '  --json-logs          JSON log lines even on a terminal',
    '  -h, --help           help for nixdocker or a command',
    '  -V, --version        print the version',
    '',
    'Settings: the project\'s .nixdockerrc.json (or .nixdockerrc, nixdocker.config.mjs, package.json "nixdocker"),',
    `over your own "builder" and "registry" settings in ${userConfigPath(process.env).file}`,
    '(NIXDOCKER_USER_CONFIG names another file); key files and caches outside the project go there.',
    '',
    'Run `nixdocker COMMAND --help` for a command\'s options.',
  ].join('\n');
}

/** Runs the CLI and returns its exit code; `main` in bin/ exits with it. */
export async function main(argv: string[], env: { stdout?: NodeJS.WritableStream } = {}): Promise<number> {
  const stdout = env.stdout ?? process.stdout;
  let log: Logger | undefined;
  let terminal: Terminal | undefined;
  let interrupted: NodeJS.Signals | null = null;
  guardStdout();
  try {
    const cmdIndex = firstPositional(argv);
    const name = cmdIndex >= 0 ? argv[cmdIndex] : undefined;
    if (name && !COMMAND_NAMES.includes(name)) {
      process.stderr.write(`nixdocker: unknown command "${name}"\n\n${await usage()}\n`);
      return 2;
    }
    let command = name ? (await loadCommand(name)) ?? undefined : undefined;
    let rest = cmdIndex >= 0 ? [...argv.slice(0, cmdIndex), ...argv.slice(cmdIndex + 1)] : argv;
    // `pull run ...` is `run --pull always ...`, so it takes run's options in run's places.
    const sub = command?.name === 'pull' ? firstCommandPositional(command, rest) : -1;
    if (sub >= 0 && rest[sub] === 'run') {
      command = (await loadCommand('run'))!;
      rest = ['--pull', 'always', ...rest.slice(0, sub), ...rest.slice(sub + 1)];
    }
    const { values, positionals } = parseCommandArgs(command, rest);
    if (values.version) {
      stdout.write(`${VERSION}\n`);
      return 0;
    }
    if (!command || values.help) {
      stdout.write(`${command ? `${command.summary}\n\nUsage: ${command.usage}` : await usage()}\n`);
      return command || values.help ? 0 : 2;
    }
    const level = (values['log-level'] as string | undefined) ?? 'info';
    if (!LEVELS.includes(level)) {
      process.stderr.write(`nixdocker: --log-level must be one of ${LEVELS.join(', ')}\n`);
      return 2;
    }
    const json = Boolean(values['json-logs']);
    terminal = await Terminal.open(process.stderr, { json });
    log = createLogger({ level: level as 'info', json, stream: terminal.logStream });
    const controller = new AbortController();
    const onSignal = (sig: NodeJS.Signals) => {
      if (controller.signal.aborted) process.exit(signalExitCode(sig)); // a second Ctrl-C does not wait
      interrupted = sig;
      log?.warn(`${sig}: stopping`);
      controller.abort(new Interrupted(sig));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    try {
      return await command.run({
        cwd: path.resolve((values.cwd as string | undefined) ?? process.cwd()),
        log,
        values,
        positionals,
        stdout,
        signal: controller.signal,
        terminal,
        progress: new ProgressReporter(terminal, log),
      });
    } finally {
      terminal.stop();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
  } catch (err) {
    // Whatever a command throws on its way out of a Ctrl-C, it was interrupted: one line, no stack.
    if (interrupted || err instanceof Interrupted) {
      const sig = interrupted ?? (err as Interrupted).signal;
      process.stderr.write(`nixdocker: interrupted (${sig})\n`);
      return signalExitCode(sig);
    }
    if (isUserError(err)) {
      process.stderr.write(`nixdocker: ${err.format()}\n`);
      return 1;
    }
    if ((err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`nixdocker: ${(err as Error).message}\nRun \`nixdocker --help\`.\n`);
      return 2;
    }
    process.stderr.write(`nixdocker: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 70;
  }
}

/** Index of the first argument that is neither an option nor a global option's value. */
function firstPositional(args: string[]): number {
  return args.findIndex((a, i) => !a.startsWith('-') && !(i > 0 && isValueOf(args[i - 1]!)));
}

/** Index of a command's first positional, skipping its own options' values (`pull --platform linux/arm64 run`). */
function firstCommandPositional(command: Command, args: string[]): number {
  const tokens = parseArgs({ args, options: { ...GLOBAL_OPTIONS, ...command.options }, strict: false, allowPositionals: true, tokens: true }).tokens ?? [];
  return tokens.find((t) => t.kind === 'positional')?.index ?? -1;
}

let stdoutGuarded = false;

/**
 * `nixdocker status | head -3`: the reader may go away before we are done.
 * Without a listener that is an uncaught EPIPE with a stack; with it, the
 * rest of the output goes nowhere and the command ends with its own code.
 */
function guardStdout(): void {
  if (stdoutGuarded) return;
  stdoutGuarded = true;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
    process.stderr.write(`nixdocker: cannot write to stdout: ${err.message}\n`);
    process.exit(74); // EX_IOERR
  });
}

/** The reason a command's signal carries when SIGINT or SIGTERM ends it. */
class Interrupted extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`interrupted by ${signal}`);
    this.name = 'Interrupted';
  }
}

/** 128 + the signal's number, as shells report a process a signal ended: 130 for SIGINT, 143 for SIGTERM. */
function signalExitCode(sig: NodeJS.Signals): number {
  return 128 + (os.constants.signals[sig] ?? 15);
}

function isValueOf(prev: string): boolean {
  return prev === '-C' || prev === '--cwd' || prev === '--log-level';
}

/**
 * Commands that run a program (`run`) stop parsing at their first positional,
 * so `nixdocker run python -c ...` hands `-c` to python.
 */
function parseCommandArgs(command: Command | undefined, args: string[]) {
  const options = { ...GLOBAL_OPTIONS, ...command?.options };
  if (command?.passthrough) {
    const tokens = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true }).tokens ?? [];
    const first = tokens.find((t) => t.kind === 'positional' || t.kind === 'option-terminator');
    const cut = first ? first.index : args.length;
    const parsed = parseArgs({ args: args.slice(0, cut), options, allowPositionals: true, strict: true });
    const tail = args.slice(first?.kind === 'option-terminator' ? cut + 1 : cut);
    return { values: parsed.values, positionals: [...parsed.positionals, ...tail] };
  }
  return parseArgs({ args, options, allowPositionals: true, strict: true });
}
