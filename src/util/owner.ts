import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Who owns a container or a temporary directory: this host, this process and
 * its start time, as `host/pid/start`. The start time tells a live owner from
 * a new process that got a dead owner's pid.
 */
export interface Owner {
  host: string;
  pid: number;
  /** Start time in clock ticks since boot (/proc/PID/stat field 22); 0 where /proc is missing. */
  start: number;
}

/** State and start time of a process from /proc; null where /proc does not have it. */
function procStat(pid: number): { state: string; start: number } | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, start: Number(fields[19]) };
  } catch {
    return null;
  }
}

export function processStart(pid: number): number | null {
  return procStat(pid)?.start ?? null;
}

let self: Owner | null = null;

export function selfOwner(): Owner {
  self ??= { host: hostname(), pid: process.pid, start: processStart(process.pid) ?? 0 };
  return self;
}

export function formatOwner(o: Owner): string {
  return `${o.host}/${o.pid}/${o.start}`;
}

export function parseOwner(s: string | undefined): Owner | null {
  const m = /^(.*)\/(\d+)\/(\d+)$/.exec(s ?? '');
  return m ? { host: m[1]!, pid: Number(m[2]), start: Number(m[3]) } : null;
}

/**
 * True while the owner runs, false once it is gone, null when this host
 * cannot tell (another host's process: only its own idle bound ends it).
 */
export function ownerAlive(o: Owner): boolean | null {
  if (o.host !== hostname()) return null;
  return pidAlive(o.pid, o.start);
}

/** A pid that runs and, where /proc tells, started at `start` (0: not checked). */
export function pidAlive(pid: number, start = 0): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: it runs, as another user.
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const now = procStat(pid);
  if (now === null) return true; // no /proc here: kill(0) is all we know
  // A killed process not yet reaped by its parent is a zombie: gone for our purposes.
  if (now.state === 'Z' || now.state === 'X') return false;
  return start === 0 || now.start === start;
}
