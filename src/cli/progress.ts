import type { PullProgress } from '../engine/run.js';
import type { Logger } from '../log.js';
import type { BuildProgress } from '../pipeline/build-image.js';
import { formatBytes } from './format.js';
import type { Terminal } from './terminal.js';

export type Progress = BuildProgress | ({ phase: 'pull'; image: string } & PullProgress);

/** Off a terminal, one progress event per phase per this many ms (plus the last one). */
const LOG_EVERY_MS = 1000;

/**
 * Turns progress into one status line per phase on a live terminal, or, off
 * one (or with --json-logs), into debug-level log events `{ progress: {...} }`
 * at most once a second per phase, so CI logs and JSON consumers get the
 * figures without bars.
 */
export class ProgressReporter {
  private readonly first = new Map<string, { t: number; bytes: number }>();
  private readonly logged = new Map<string, number>();

  constructor(
    private readonly terminal: Terminal,
    private readonly log: Logger,
  ) {}

  report(p: Progress): void {
    const bytes = movedBytes(p);
    const now = performance.now();
    const platform = 'platform' in p && p.platform ? p.platform : null;
    const key = platform ? `${p.phase} ${platform}` : p.phase;
    const start = this.first.get(key) ?? { t: now, bytes: bytes ?? 0 };
    this.first.set(key, start);
    const seconds = (now - start.t) / 1000;
    // A rate over less than half a second is noise.
    const rate = bytes !== null && seconds >= 0.5 ? Math.max(0, (bytes - start.bytes) / seconds) : null;
    if (this.terminal.live) {
      this.terminal.status(key, `${platform ? `[${platform}] ` : ''}${describe(p, rate)}`);
      return;
    }
    const last = this.logged.get(key) ?? -Infinity;
    if (now - last < LOG_EVERY_MS && !finished(p)) return;
    this.logged.set(key, now);
    this.log.debug({ progress: { ...p, ...(rate !== null ? { bytesPerSecond: Math.round(rate) } : {}) } }, `${p.phase} progress`);
  }

  /** The phase is over (on every platform): its lines go. */
  end(phase: Progress['phase']): void {
    for (const key of [...this.first.keys()]) {
      if (key === phase || key.startsWith(`${phase} `)) {
        this.terminal.clear(key);
        this.first.delete(key);
      }
    }
    this.terminal.clear(phase);
  }
}

function movedBytes(p: Progress): number | null {
  switch (p.phase) {
    case 'assemble':
      return p.bytesRead;
    case 'push':
      return p.bytesSent;
    case 'upload':
      return p.bytes;
    case 'pull':
      return p.bytes;
    default:
      return null;
  }
}

function finished(p: Progress): boolean {
  switch (p.phase) {
    case 'build':
      return p.total + p.fetchTotal > 0 && p.started + p.fetched >= p.total + p.fetchTotal;
    case 'assemble':
      return p.layersDone === p.layersTotal;
    case 'push':
      return p.blobsDone === p.blobsTotal;
    case 'upload':
      return p.uploaded >= p.total;
    case 'pull':
      return p.layers > 0 && p.done === p.layers;
  }
}

const rateText = (rate: number | null) => (rate === null ? '' : `, ${formatBytes(rate)}/s`);

/** One status line: "push: 12/57 blobs, 80.0 MiB of 197.0 MiB sent, 95.3 MiB/s; 3 already there, 2 mounted". */
export function describe(p: Progress, rate: number | null): string {
  switch (p.phase) {
    case 'build': {
      // `started` counts the one building now: the ones before it are built.
      const parts = [`Nix: ${Math.max(p.started - 1, 0)}/${p.total} derivation(s) built`];
      if (p.fetchTotal > 0) parts.push(`${p.fetched}/${p.fetchTotal} path(s) fetched`);
      return `${parts.join(', ')}${p.current ? `; now ${p.current}` : ''}`;
    }
    case 'assemble':
      return `assemble: ${p.layersDone}/${p.layersTotal} layers${p.layersCached ? ` (${p.layersCached} cached)` : ''}, ${formatBytes(p.bytesRead)} read${rateText(rate)}`;
    case 'push':
      return `push: ${p.blobsDone}/${p.blobsTotal} blobs, ${formatBytes(p.bytesSent)} of ${formatBytes(p.bytesTotal)} sent${rateText(rate)}; ${p.skipped} already there, ${p.mounted} mounted`;
    case 'upload':
      return `upload: ${p.uploaded}/${p.total} path(s), ${formatBytes(p.bytes)} of NARs${rateText(rate)} to ${p.url}`;
    case 'pull':
      return `pull: ${p.done}/${p.layers} layers${p.bytesTotal ? `, ${formatBytes(p.bytes)} of ${formatBytes(p.bytesTotal)}` : ''}${rateText(rate)}`;
  }
}
