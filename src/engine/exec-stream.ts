import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type Docker from 'dockerode';

export interface ExecStream {
  /** The process's stdout, with back-pressure down to the engine's socket. */
  stdout: Readable;
  /** Settles once stdout has ended: the exit code and the last few KB of stderr. */
  done: Promise<{ exitCode: number; stderr: string }>;
}

/** stderr kept for the error message; more would only hold memory. */
const STDERR_KEEP = 8 * 1024;

/**
 * Runs `cmd` in a running container and hands its stdout over as a stream
 * (the exec's attach stream, so a remote engine works as a local one).
 * dockerode's own `demuxStream` writes without waiting for the reader, so a
 * slow consumer of a large output would hold all of it in memory; this
 * demultiplexer is a Transform, and piping gives back-pressure.
 */
export async function execStream(container: Docker.Container, cmd: string[], signal?: AbortSignal): Promise<ExecStream> {
  signal?.throwIfAborted();
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true, AttachStdin: false, Tty: false });
  const raw = (await exec.start({ hijack: true, stdin: false })) as unknown as Readable;
  const demux = new Demux();
  const onAbort = () => raw.destroy(signal?.reason instanceof Error ? signal.reason : new Error('cancelled'));
  signal?.addEventListener('abort', onAbort, { once: true });
  raw.on('error', (err) => demux.destroy(err));
  raw.pipe(demux);
  // A reader that stops early destroys demux: end the exec's connection too, or tar blocks in the builder.
  demux.once('close', () => raw.destroy());
  const done = new Promise<void>((resolve, reject) => {
    demux.on('end', resolve);
    demux.on('error', reject);
    demux.on('close', () => (demux.readableEnded ? resolve() : reject(new Error('the exec stream closed before its end'))));
  })
    .then(async () => {
      const info = await exec.inspect();
      return { exitCode: info.ExitCode ?? 1, stderr: demux.stderr() };
    })
    .finally(() => signal?.removeEventListener('abort', onAbort));
  done.catch(() => {}); // the caller may never ask when the stream itself failed
  return { stdout: demux, done };
}

/**
 * The engine's multiplexed attach format: frames of an 8-byte header (stream
 * 1 = stdout, 2 = stderr; bytes 4–7 the big-endian length) and a payload.
 */
class Demux extends Transform {
  private header = Buffer.alloc(8);
  private headerFill = 0;
  /** Payload bytes left in the current frame, and its stream. */
  private left = 0;
  private kind = 0;
  private err: Buffer[] = [];
  private errBytes = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.left === 0) {
        const n = Math.min(8 - this.headerFill, chunk.length - at);
        chunk.copy(this.header, this.headerFill, at, at + n);
        this.headerFill += n;
        at += n;
        if (this.headerFill < 8) break;
        this.headerFill = 0;
        this.kind = this.header[0]!;
        this.left = this.header.readUInt32BE(4);
        continue;
      }
      const n = Math.min(this.left, chunk.length - at);
      const payload = chunk.subarray(at, at + n);
      if (this.kind === 1) this.push(payload);
      else if (this.kind === 2) this.keepStderr(payload);
      this.left -= n;
      at += n;
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    cb(this.left > 0 || this.headerFill > 0 ? new Error('the exec stream ended inside a frame') : null);
  }

  private keepStderr(b: Buffer): void {
    this.err.push(Buffer.from(b));
    this.errBytes += b.length;
    while (this.errBytes > STDERR_KEEP && this.err.length > 1) this.errBytes -= this.err.shift()!.length;
  }

  stderr(): string {
    return Buffer.concat(this.err).toString('utf8').slice(-STDERR_KEEP);
  }
}
