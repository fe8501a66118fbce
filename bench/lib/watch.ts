/**
 * A running `nixdocker watch --json-logs` for the benchmarks: its log lines
 * on stderr carry an `event` field (`watching`, `buildStart`, `imageReady`
 * with `image`, `upToDate`, `buildFailed`), parsed as they arrive.
 */
import { readFile } from 'node:fs/promises';
import { execa, type ResultPromise } from 'execa';
import { BIN } from './proc.js';

export interface LogEvent {
  event?: string;
  image?: string;
  msg?: string;
  [k: string]: unknown;
}

/** A running `nixdocker watch`, its JSON log lines parsed as they arrive. */
export class Watch {
  readonly events: LogEvent[] = [];
  readonly child: ResultPromise;
  private waiters: (() => void)[] = [];
  private rest = '';
  private tail = '';

  /** `nodeArgs` go to node before the CLI (e.g. `--heapsnapshot-signal=SIGUSR2`). */
  constructor(dir: string, env: Record<string, string>, nodeArgs: string[] = []) {
    this.child = execa(process.execPath, [...nodeArgs, BIN, '-C', dir, '--json-logs', 'watch'], { reject: false, env, stdin: 'ignore' });
    this.child.stderr!.on('data', (c: Buffer) => {
      const text = c.toString();
      this.tail = (this.tail + text).slice(-4000);
      const lines = (this.rest + text).split('\n');
      this.rest = lines.pop() ?? '';
      for (const line of lines) {
        try {
          this.events.push(JSON.parse(line) as LogEvent);
        } catch {
          continue;
        }
      }
      for (const w of this.waiters.splice(0)) w();
    });
    void this.child.then(() => {
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /**
   * The first event at index `from` or later for which `pred` holds, within
   * `ms`. A `buildFailed` line or the daemon's exit ends the wait with an error.
   */
  async waitFor(what: string, pred: (e: LogEvent) => boolean, ms: number, from = 0): Promise<{ event: LogEvent; index: number }> {
    const deadline = performance.now() + ms;
    for (;;) {
      for (let i = from; i < this.events.length; i++) {
        const e = this.events[i]!;
        if (pred(e)) return { event: e, index: i };
        if (e.event === 'buildFailed') throw new Error(`watch: build failed while waiting for ${what}: ${e.msg ?? ''}\n${this.tail}`);
      }
      from = this.events.length;
      if (this.child.exitCode !== null) throw new Error(`watch exited (${this.child.exitCode}) while waiting for ${what}:\n${this.tail}`);
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`watch: no ${what} within ${ms} ms; events: ${this.events.map((e) => e.event ?? '-').join(', ')}\n${this.tail}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => (clearTimeout(t), resolve()));
      });
    }
  }

  /** SIGTERM, then SIGKILL after 15 s. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    const killer = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    await this.child;
    clearTimeout(killer);
  }
}

export const ready = (e: LogEvent) => e.event === 'imageReady' || e.event === 'upToDate';

/** Runs `fn` on a `nixdocker watch` of `dir` once its first build is ready; stops it after. */
export async function withWatch<T>(
  dir: string,
  env: Record<string, string>,
  fn: (w: Watch) => Promise<T>,
  opts: { firstReadyMs?: number; nodeArgs?: string[] } = {},
): Promise<T> {
  const w = new Watch(dir, env, opts.nodeArgs);
  try {
    await w.waitFor('"watching"', (e) => e.event === 'watching', 60_000);
    await w.waitFor('the first imageReady or upToDate', ready, opts.firstReadyMs ?? 300_000);
    return await fn(w);
  } finally {
    await w.stop();
  }
}

/** VmRSS of a process, in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}
