import { execa, type ResultPromise } from 'execa';
import { BIN } from './project.js';

export interface LogEvent {
  event?: string;
  msg?: string;
  level?: number;
  image?: string;
  buildId?: number;
  [k: string]: unknown;
}

/**
 * `nixdocker watch --json-logs` as a child process, with its log lines parsed
 * so a test can wait for events (bounded) instead of sleeping.
 */
export class WatchProcess {
  readonly events: LogEvent[] = [];
  readonly child: ResultPromise;
  private waiters: { pred: (e: LogEvent) => boolean; resolve: (e: LogEvent) => void }[] = [];
  private rest = '';
  stderr = '';

  /** `prefix`: a command that runs the daemon, e.g. in a user namespace with its own limits. */
  constructor(dir: string, extraEnv: Record<string, string | undefined> = {}, prefix: string[] = []) {
    const argv = [process.execPath, BIN, '-C', dir, '--json-logs', '--log-level', 'debug', 'watch'];
    const [cmd, ...args] = [...prefix, ...argv] as [string, ...string[]];
    this.child = execa(cmd, args, {
      reject: false,
      env: { DOCKER_HOST: process.env.DOCKER_HOST, ...extraEnv },
      stdin: 'ignore',
    });
    this.child.stderr!.on('data', (c: Buffer) => {
      this.stderr += c.toString();
      const lines = (this.rest + c.toString()).split('\n');
      this.rest = lines.pop() ?? '';
      for (const l of lines) {
        let e: LogEvent;
        try {
          e = JSON.parse(l) as LogEvent;
        } catch {
          continue;
        }
        this.events.push(e);
        this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
      }
    });
  }

  /** The next event (from now, or already seen at index `from`) matching `pred`, within `ms`. */
  waitFor(pred: (e: LogEvent) => boolean, ms = 60_000, from = this.events.length): Promise<LogEvent> {
    const seen = this.events.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching event within ${ms} ms; events: ${this.events.map((e) => e.event ?? e.msg).join(', ')}\n${this.stderr.slice(-3000)}`)), ms);
      this.waiters.push({ pred, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  event(name: string, ms?: number, from?: number): Promise<LogEvent> {
    return this.waitFor((e) => e.event === name, ms, from);
  }

  count(name: string, from = 0): number {
    return this.events.slice(from).filter((e) => e.event === name).length;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ exitCode: number | undefined; ms: number }> {
    const t0 = Date.now();
    this.child.kill(signal);
    // Bounded: a daemon that ignores the signal is killed after 30 s.
    const guard = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    const r = await this.child.finally(() => clearTimeout(guard));
    return { exitCode: r.exitCode, ms: Date.now() - t0 };
  }
}
