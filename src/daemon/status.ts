import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeJson } from '../util/json-file.js';
import { lockHolder } from './lock.js';
import type { SchedulerState } from './scheduler.js';

/** What `nixdocker status` shows: the daemon's state file. */
export interface DaemonStatus {
  pid: number;
  projectDir: string;
  startedAt: string;
  updatedAt: string;
  state: SchedulerState;
  /** The identity of the newest inputs seen. */
  current: string | null;
  building: {
    buildId: number;
    image: string;
    phase: string | null;
    startedAt: string;
    /** Each platform's own phase (evaluate to assemble), when `platforms` is set. */
    platforms?: Record<string, string>;
  } | null;
  /** The last image that was ready (built now or found up to date); `platforms` as its index holds them. */
  lastImage: { image: string; digest: string | null; at: string; status: 'built' | 'up-to-date'; platforms?: { platform: string; digest: string; built: boolean }[] } | null;
  /** Milliseconds per phase of each platform of the last build. */
  lastPlatformDurations?: Record<string, Record<string, number>> | null;
  lastDurations: Record<string, number> | null;
  /** What Nix did in the last build that ran it: derivations built, paths fetched from substituters. */
  lastNix: { built: number; fetched: number; remote: number } | null;
  /** The last upload to builder.cache (counts only; the key never appears here). */
  lastUpload: { url: string; ok: boolean; uploaded: number; bytes: number; message: string | null; at: string } | null;
  lastError: { buildId: number; image: string | null; message: string; at: string } | null;
  builds: { ok: number; failed: number; cancelled: number };
}

export function statusFile(cacheDir: string): string {
  return path.join(cacheDir, 'state', 'daemon.json');
}

/**
 * Keeps the state file in step with the daemon. Writes are atomic (rename)
 * and serialised, so a reader never sees half a file and the last write wins.
 */
export class StatusWriter {
  readonly status: DaemonStatus;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly cacheDir: string,
    projectDir: string,
  ) {
    const now = new Date().toISOString();
    this.status = {
      pid: process.pid,
      projectDir,
      startedAt: now,
      updatedAt: now,
      state: 'idle',
      current: null,
      building: null,
      lastImage: null,
      lastDurations: null,
      lastNix: null,
      lastUpload: null,
      lastError: null,
      builds: { ok: 0, failed: 0, cancelled: 0 },
    };
  }

  update(change: (s: DaemonStatus) => void): Promise<void> {
    change(this.status);
    this.status.updatedAt = new Date().toISOString();
    const snapshot = JSON.stringify(this.status);
    this.writing = this.writing.then(() => writeJson(statusFile(this.cacheDir), JSON.parse(snapshot)).catch(() => {}));
    return this.writing;
  }

  flush(): Promise<void> {
    return this.writing;
  }
}

/** The daemon's state and whether it still runs; null when none ever ran here. */
export async function readStatus(cacheDir: string): Promise<{ status: DaemonStatus; running: boolean } | null> {
  try {
    const status = JSON.parse(await readFile(statusFile(cacheDir), 'utf8')) as DaemonStatus;
    const holder = await lockHolder(cacheDir);
    return { status, running: holder !== null && holder === status.pid };
  } catch {
    return null;
  }
}
