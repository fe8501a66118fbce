import type { CommandResult, ImageDescription, Plugin, PluginContext } from '../src/index.js';
import { parseEnvOption, parsePublish, type PublishedPort } from '../src/index.js';

/**
 * autorun: runs a command in every new image, like `nixdocker run` (the
 * workdir's user/ folder is the working directory), logs its output and
 * reports the result through the commandFinished hook.
 *
 * It never holds up a build: the imageReady tap only starts the run and
 * returns. A newer image cancels a run still going (its container is killed
 * and removed) and starts its own once the old one has stopped; the cancelled
 * run reports `cancelled: true`. An image that went only to the registry is
 * pulled first. At shutdown the running command is cancelled and awaited.
 */
export interface AutorunOptions {
  /** Program and arguments, run as an argument array (no shell unless you name one). */
  command: string[];
  /** Kill the command after this many milliseconds. Default 10 minutes. */
  timeoutMs?: number;
  /** Variables for the command, as `nixdocker run -e`: `KEY=VALUE`, or `KEY` to pass the daemon's own. */
  env?: string[];
  /** Ports to publish, as `nixdocker run -p`: `8888:8888`, `127.0.0.1:8080:80`, ... */
  publish?: string[];
}

/** CommandResult.output keeps the last this many bytes. */
const OUTPUT_LIMIT = 64 * 1024;
/** How long a new run (or shutdown) waits for a cancelled one to stop before going on without it. */
const STOP_WAIT_MS = 15_000;

interface Normalized {
  command: string[];
  timeoutMs: number;
  env: string[];
  publish: PublishedPort[];
}

function normalizeOptions(raw: AutorunOptions | Record<string, unknown>): Normalized {
  const o = raw as Record<string, unknown>;
  const command = o.command;
  if (!Array.isArray(command) || command.length === 0 || !command.every((a) => typeof a === 'string')) {
    throw new TypeError(`autorun plugin: option "command" must be a non-empty array of strings (program, then arguments), not ${JSON.stringify(command)}`);
  }
  const timeoutMs = o.timeoutMs ?? 10 * 60_000;
  if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new TypeError(`autorun plugin: option "timeoutMs" must be a positive number of milliseconds, not ${JSON.stringify(o.timeoutMs)}`);
  }
  const strings = (key: string): string[] => {
    const v = o[key] ?? [];
    if (!Array.isArray(v) || !v.every((a) => typeof a === 'string')) {
      throw new TypeError(`autorun plugin: option "${key}" must be an array of strings, not ${JSON.stringify(v)}`);
    }
    return v as string[];
  };
  const env = strings('env');
  // Checked now, so a typo stops the start instead of every run; a bare KEY is read at each run.
  for (const e of env) parseEnvOption(e, 'autorun option "env"', {});
  const publish = strings('publish').map((p) => parsePublish(p, 'autorun option "publish"'));
  return { command: [...(command as string[])], timeoutMs, env, publish };
}

interface Run {
  controller: AbortController;
  /** Settles when the run has reported; never rejects. */
  done: Promise<void>;
}

/** Creates the autorun plugin; `options` come from the config's plugin entry. */
export default function autorun(options: AutorunOptions | Record<string, unknown>): Plugin {
  const opts = normalizeOptions(options);
  return {
    name: 'autorun',
    apply(hooks, context) {
      let current: Run | null = null;

      hooks.imageReady.tap('autorun', (image) => {
        if (image.destinations.length === 0) {
          context.log.info(`${image.image} went to no destination (a plugin vetoed its push): nothing to run`);
          return;
        }
        const previous = current;
        previous?.controller.abort(new Error('superseded by a newer image'));
        const controller = new AbortController();
        const run: Run = {
          controller,
          done: (async () => {
            // One container at a time, and the cancelled run reports before the new one.
            if (previous) await settleWithin(previous.done, STOP_WAIT_MS, () => context.log.warn('a cancelled autorun has not stopped yet; starting the new one anyway'));
            await execute(image, opts, controller.signal, context);
          })(),
        };
        current = run;
        void run.done.finally(() => {
          if (current === run) current = null;
        });
      });

      hooks.shutdown.tapPromise('autorun', async () => {
        const run = current;
        if (!run) return;
        run.controller.abort(new Error('nixdocker is stopping'));
        await settleWithin(run.done, STOP_WAIT_MS, () => context.log.warn('the autorun command did not stop in time'));
      });
    },
  };
}

/** Runs the command once and reports it; never throws. */
async function execute(image: ImageDescription, opts: Normalized, cancel: AbortSignal, context: PluginContext): Promise<void> {
  const output = new OutputTail(OUTPUT_LIMIT);
  const lines = new LineLogger((line) => context.log.info({ image: image.image }, line));
  const timeout = AbortSignal.timeout(opts.timeoutMs);
  const signal = AbortSignal.any([cancel, timeout]);
  const shown = opts.command.join(' ');
  const t0 = performance.now();
  let exitCode: number | null = null;
  try {
    if (!image.destinations.includes('engine') && !signal.aborted) {
      await context.pull(image.image);
    }
    if (!signal.aborted) {
      context.log.info(`running \`${shown}\` in ${image.image}`);
      const code = await context.runInImage(image.image, opts.command, {
        signal,
        env: opts.env.map((e) => parseEnvOption(e, 'autorun option "env"')).filter((e): e is string => e !== null),
        publish: opts.publish,
        onOutput: (chunk) => {
          output.push(chunk);
          lines.push(chunk);
        },
      });
      // A killed command's status is the engine's, not the command's own.
      exitCode = signal.aborted ? null : code;
    }
  } catch (err) {
    const message = (err as Error)?.message ?? String(err);
    output.push(`${message}\n`);
    if (!signal.aborted) context.log.error(`autorun could not run \`${shown}\` in ${image.image}: ${message}`);
  }
  lines.end();
  const cancelled = cancel.aborted;
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  if (cancelled) context.log.info(`\`${shown}\` cancelled after ${seconds} s: ${(cancel.reason as Error)?.message ?? 'cancelled'}`);
  else if (timeout.aborted) context.log.warn(`\`${shown}\` killed after the timeout of ${opts.timeoutMs} ms (autorun option "timeoutMs")`);
  else if (exitCode === 0) context.log.info(`\`${shown}\` exited with 0 after ${seconds} s`);
  else if (exitCode !== null) context.log.warn(`\`${shown}\` exited with ${exitCode} after ${seconds} s`);

  const result: CommandResult = { image: image.image, command: opts.command, exitCode, output: output.text(), cancelled };
  try {
    await context.reportCommand(result);
  } catch (err) {
    context.log.error(`reporting the autorun result failed: ${(err as Error)?.message ?? String(err)}`);
  }
}

/** Waits for `p`, at most `ms`; calls `late` when the wait ran out. */
async function settleWithin(p: Promise<void>, ms: number, late: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), ms);
  });
  const lateNow = await Promise.race([p.then(() => false), expired]);
  clearTimeout(timer);
  if (lateNow) late();
}

/** The last `limit` bytes of everything pushed, cut at a character boundary. */
class OutputTail {
  private chunks: Buffer[] = [];
  private bytes = 0;
  constructor(private readonly limit: number) {}

  push(chunk: string): void {
    const b = Buffer.from(chunk);
    this.chunks.push(b);
    this.bytes += b.length;
    while (this.chunks.length > 1 && this.bytes - this.chunks[0]!.length >= this.limit) this.bytes -= this.chunks.shift()!.length;
  }

  text(): string {
    let all = Buffer.concat(this.chunks);
    if (all.length > this.limit) {
      let start = all.length - this.limit;
      // Skip UTF-8 continuation bytes so the text starts on a whole character.
      while (start < all.length && (all[start]! & 0xc0) === 0x80) start++;
      all = all.subarray(start);
    }
    return all.toString();
  }
}

/** Splits output into lines for the log; a partial line waits for its end. */
class LineLogger {
  private partial = '';
  constructor(private readonly emit: (line: string) => void) {}

  push(chunk: string): void {
    const parts = (this.partial + chunk).split('\n');
    this.partial = parts.pop() ?? '';
    for (const line of parts) this.emit(line.replace(/\r$/, ''));
    // Output without newlines (progress bars) still reaches the log, in pieces.
    if (this.partial.length > OUTPUT_LIMIT) this.end();
  }

  end(): void {
    if (this.partial !== '') this.emit(this.partial.replace(/\r$/, ''));
    this.partial = '';
  }
}
