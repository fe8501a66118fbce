/**
 * A real terminal for the progress checks: a command in a detached tmux pane
 * of a fixed size, its screen captured as the user sees it, and the rules a
 * captured screen must keep (no line mixes a status with a log line).
 * Used by test/integration/progress.test.ts and scripts/tty-check.ts.
 */
import { execa } from 'execa';

/** A pino-pretty log line's prefix: `[14:02:11] INFO:`. */
export const LOG_LINE = /\[\d\d:\d\d:\d\d\] (?:TRACE|DEBUG|INFO|WARN|ERROR|FATAL):/;
/** Anything of the status block: a phase's line or a step word ("assemble…"). */
export const STATUS = /^(?:Nix|assemble|push|pull): |…/;
/** A phase's status line, after an optional `[platform] `. */
const PHASE_LINE = /(?:Nix|assemble|push|pull): \d+\//;

/** The live line of each long phase of a build, as the terminal draws it (where it starts is mixedLine's business). */
export const PHASE_PROGRESS = {
  build: /Nix: \d+\/\d+ derivation\(s\) built(?:, \d+\/\d+ path\(s\) fetched)?; now \S/,
  assemble: /assemble: \d+\/\d+ layers(?: \(\d+ cached\))?, [\d.]+ \w+ read/,
  push: /push: \d+\/\d+ blobs, [\d.]+ \w+ of [\d.]+ \w+ sent(?:, [\d.]+ \w+\/s)?; \d+ already there, \d+ mounted/,
} as const;

/** Escape sequences (CSI) out of raw terminal bytes. */
export function stripEscapes(s: string): string {
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}

/**
 * Why a screen line mixes a status fragment with something else (a log line,
 * Nix's output), or null when it is one thing. A status or log line owns its
 * screen line from column 0.
 */
export function mixedLine(line: string): string | null {
  const log = line.search(LOG_LINE);
  if (log > 0) return 'a log line starts mid-line';
  const phase = line.search(PHASE_LINE);
  if (phase > 0 && !/^\[[^\]]+\] $/.test(line.slice(0, phase))) return 'a status line starts mid-line';
  if (/^[A-Za-z]+….+/.test(line)) return 'text follows a step word';
  if (phase >= 0 && (log >= 0 || /\/nix\/store\/|building '/.test(line))) return 'a status line carries a log or Nix line';
  return null;
}

/** A detached tmux server of its own (`-L`), one session with one pane running `command`. */
export class TmuxPane {
  private constructor(
    private readonly socket: string,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Starts `command` (a shell string: the pane runs it with sh) in a pane of
   * `width`×`height`. After the command the pane prints `EXIT=<code>`, signals
   * `done()` and stays, so the screen can be captured afterwards. `raw` names
   * a file that receives every byte the pane is sent, escape sequences included.
   */
  static async start(command: string, opts: { width: number; height: number; env?: Record<string, string>; raw?: string; timeoutMs?: number }): Promise<TmuxPane> {
    const pane = new TmuxPane(`nixdocker-${process.pid}-${Date.now()}`, opts.timeoutMs ?? 120_000);
    const env = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ['-e', `${k}=${v}`]);
    const script = `${command}; echo "EXIT=$?"; tmux -L ${pane.socket} wait-for -S done; sleep 3600`;
    await pane.tmux('new-session', '-d', '-x', String(opts.width), '-y', String(opts.height), '-s', 't', ...env, script);
    if (opts.raw) await pane.tmux('pipe-pane', '-t', 't', '-o', `cat >> ${opts.raw}`);
    return pane;
  }

  /** Resolves when the command has ended (it has printed `EXIT=`). */
  async done(): Promise<void> {
    await this.tmux('wait-for', 'done');
  }

  /**
   * Captures the visible screen every `everyMs` until the command ends and
   * hands each capture that differs from the one before to `onScreen`, with
   * the time since the call. Returns how many it handed over.
   */
  async watch(everyMs: number, onScreen: (screen: string[], ms: number) => void | Promise<void>): Promise<number> {
    const t0 = performance.now();
    let ended = false;
    const done = this.done().finally(() => (ended = true));
    let previous = '';
    let n = 0;
    while (!ended) {
      const screen = await this.capture();
      const text = screen.join('\n');
      if (text !== previous) {
        previous = text;
        n++;
        await onScreen(screen, performance.now() - t0);
      }
      await Promise.race([done, new Promise((r) => setTimeout(r, everyMs))]);
    }
    await done;
    return n;
  }

  /** The visible screen, row by row; with `history`, the scrollback above it too (wrapped lines joined). */
  async capture(opts: { history?: boolean } = {}): Promise<string[]> {
    const args = opts.history ? ['-J', '-S', '-', '-E', '-'] : [];
    return (await this.tmux('capture-pane', '-t', 't', '-p', ...args)).stdout.split('\n');
  }

  async kill(): Promise<void> {
    await execa('tmux', ['-L', this.socket, 'kill-server'], { reject: false });
  }

  private tmux(...args: string[]) {
    return execa('tmux', ['-L', this.socket, ...args], { timeout: this.timeoutMs });
  }
}
