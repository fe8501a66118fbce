/**
 * Where Nix commands run: in a builder container (container mode) or on the
 * host (local mode). The Nix steps in nix/commands.ts only see this interface.
 */
export interface NixRunner {
  /** Absolute path, as Nix sees it, of the staged inputs (nix/ and project/). */
  readonly root: string;
  /**
   * Where this project's GC roots live, as Nix sees it: a build roots its
   * outputs (so the image's whole closure) there, replacing the previous set
   * once it succeeds. One folder per project, so projects sharing a store
   * never drop each other's roots.
   */
  readonly gcRoots: string;
  /** Runs one command; stderr arrives line by line while it runs. */
  run(cmd: string[], opts: RunOptions): Promise<RunResult>;
  /** Stops whatever still runs and removes what the runner created. */
  close(): Promise<void>;
}

export interface RunOptions {
  onStderrLine?: (line: string) => void;
  signal?: AbortSignal;
  /** Extra environment variables for this command only. */
  env?: Record<string, string>;
  /**
   * Bytes for the command's stdin, then end of file. Secrets travel this way
   * (never as arguments or files), so nothing keeps them once the command ends.
   */
  stdin?: Buffer;
}

export interface RunResult {
  exitCode: number;
  stdout: string;
  /** The last lines of stderr, for error messages. */
  stderrTail: string[];
}

/** Keeps the last `max` lines of a stream and hands every complete line on. */
export class LineSplitter {
  private rest = '';
  readonly tail: string[] = [];
  constructor(
    private readonly onLine?: (line: string) => void,
    private readonly max = 200,
  ) {}

  push(chunk: Buffer | string): void {
    const text = this.rest + chunk.toString();
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    for (const l of lines) this.line(l);
  }

  end(): void {
    if (this.rest) this.line(this.rest);
    this.rest = '';
  }

  private line(l: string): void {
    const line = l.replace(/\r$/, '');
    this.tail.push(line);
    if (this.tail.length > this.max) this.tail.shift();
    this.onLine?.(line);
  }
}
