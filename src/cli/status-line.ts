/**
 * One live line on a terminal ("building hello (2/4)"), rewritten in place.
 * Off when the stream is not a TTY, so logs and CI output stay plain.
 */
export class StatusLine {
  readonly active: boolean;
  private shown = '';

  constructor(private readonly stream: NodeJS.WriteStream) {
    this.active = Boolean(stream.isTTY) && process.env.TERM !== 'dumb';
  }

  set(text: string): void {
    if (!this.active) return;
    const width = (this.stream.columns ?? 80) - 1;
    this.shown = text.length > width ? `${text.slice(0, width - 1)}…` : text;
    this.stream.write(`\r\x1b[2K${this.shown}`);
  }

  /** Prints a log line above the status line. */
  log(text: string): void {
    if (!this.active) return;
    this.stream.write(`\r\x1b[2K${text}\n${this.shown}`);
  }

  clear(): void {
    if (this.active && this.shown) this.stream.write('\r\x1b[2K');
    this.shown = '';
  }
}
