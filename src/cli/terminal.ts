import { Writable } from 'node:stream';

type LogUpdate = ((...text: string[]) => void) & { clear(): void; done(): void };
type CreateLogUpdate = (stream: NodeJS.WritableStream, opts: { showCursor: boolean }) => LogUpdate;

/** DEC mode 2026: a terminal that knows it shows what comes between these as one frame. */
const SYNC_START = '\x1b[?2026h';
const SYNC_END = '\x1b[?2026l';

/** Redraws at most this often: a terminal cannot show faster, and each redraw costs a write. */
const FRAME_MS = 80;

/**
 * Owns the bottom of the terminal (stderr) while long work runs: one block of
 * status lines, one per phase under way, redrawn in place by log-update.
 * Everything else that goes to stderr while it is shown (log lines, Nix's
 * build output) goes through `write`, which erases the block, prints the
 * text and draws the block again below it, so a line never mixes the two.
 * Those three go out as one write in one synchronized update: the screen
 * never shows the block erased and not yet drawn again (with log-update's
 * three writes a 200 ms capture of a cold build caught that once in 464).
 *
 * Off (`live` false) when stderr is not a TTY, TERM is dumb or JSON logs
 * were asked for: then nothing is drawn, and progress goes to the log
 * instead (see ProgressReporter).
 */
export class Terminal {
  private readonly lines = new Map<string, string>();
  private frame: NodeJS.Timeout | null = null;
  private drawn = false;
  private readonly update: LogUpdate | null;
  /** While `write` runs: what log-update and the text would have written, to go out as one write. */
  private batch: string[] | null = null;

  private constructor(
    private readonly stream: NodeJS.WriteStream,
    createLogUpdate: CreateLogUpdate | null,
  ) {
    // log-update writes to this, which is the stream unless a batch is being gathered.
    const sink = {
      isTTY: true,
      get columns() {
        return stream.columns;
      },
      get rows() {
        return stream.rows;
      },
      write: (chunk: string) => (this.batch ? this.batch.push(chunk) > 0 : stream.write(chunk)),
    };
    this.update = createLogUpdate && createLogUpdate(sink as unknown as NodeJS.WritableStream, { showCursor: true });
  }

  /** A terminal for `stream`; loads log-update only when it will draw. */
  static async open(stream: NodeJS.WriteStream, opts: { json?: boolean } = {}): Promise<Terminal> {
    const live = Boolean(stream.isTTY) && process.env.TERM !== 'dumb' && !opts.json;
    if (!live) return new Terminal(stream, null);
    const { createLogUpdate } = await import('log-update');
    return new Terminal(stream, createLogUpdate as unknown as CreateLogUpdate);
  }

  /** True when status lines are drawn. */
  get live(): boolean {
    return this.update !== null;
  }

  /** The stream loggers write to: through the terminal when live, else stderr itself. */
  get logStream(): NodeJS.WritableStream {
    if (!this.update) return this.stream;
    const out = new Writable({
      write: (chunk: Buffer | string, _enc, cb) => {
        this.write(String(chunk));
        cb();
      },
    });
    // The logger picks pretty lines for a TTY: this stream is one.
    return Object.assign(out, { isTTY: true, columns: this.stream.columns });
  }

  /** Sets (or replaces) the status line of `key`; drawn on the next frame. */
  status(key: string, text: string): void {
    if (!this.update) return;
    const width = Math.max((this.stream.columns || 80) - 1, 10);
    // One screen row per line: a wrapped line would leave a fragment behind on some terminals.
    this.lines.set(key, text.length > width ? `${text.slice(0, width - 1)}…` : text);
    this.schedule();
  }

  /** Removes the status line of `key`. */
  clear(key: string): void {
    if (!this.update || !this.lines.delete(key)) return;
    this.schedule();
  }

  /** Prints text (whole lines) above the status block. */
  write(text: string): void {
    if (!this.update) {
      this.stream.write(text);
      return;
    }
    const batch: string[] = [];
    this.batch = batch;
    try {
      if (this.drawn) this.update.clear();
      batch.push(text.endsWith('\n') ? text : `${text}\n`);
      this.draw();
    } finally {
      this.batch = null;
      // log-update marks each of its writes as a synchronized update; the batch is one.
      this.stream.write(`${SYNC_START}${batch.join('').replaceAll(SYNC_START, '').replaceAll(SYNC_END, '')}${SYNC_END}`);
    }
  }

  /** Erases the block and stops drawing; output after this is plain. */
  stop(): void {
    if (this.frame) clearTimeout(this.frame);
    this.frame = null;
    this.lines.clear();
    if (this.update && this.drawn) this.update.clear();
    this.drawn = false;
  }

  private schedule(): void {
    this.frame ??= setTimeout(() => {
      this.frame = null;
      this.draw();
    }, FRAME_MS);
  }

  private draw(): void {
    if (!this.update) return;
    if (this.lines.size === 0) {
      if (this.drawn) this.update.clear();
      this.drawn = false;
      return;
    }
    this.update([...this.lines.values()].join('\n'));
    this.drawn = true;
  }
}
