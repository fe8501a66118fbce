import { mkdir, open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from '../errors.js';

/**
 * One daemon per project: a lock file holding the daemon's pid, created
 * atomically (O_EXCL). A lock whose process is gone is stale and taken over.
 */
export class DaemonLock {
  private constructor(readonly file: string) {}

  static async acquire(cacheDir: string): Promise<DaemonLock> {
    const file = path.join(cacheDir, 'daemon.lock');
    await mkdir(cacheDir, { recursive: true });
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fh = await open(file, 'wx');
        await fh.writeFile(`${process.pid}\n`);
        await fh.close();
        return new DaemonLock(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const pid = await lockHolder(cacheDir);
      if (pid !== null && pid !== process.pid) {
        throw new UserError(`A nixdocker daemon is already running for this project (pid ${pid}).`, '`nixdocker status` shows what it does; stop it with kill ' + pid);
      }
      await rm(file, { force: true }); // stale: its process is gone
    }
    throw new UserError(`Cannot take the daemon lock ${file}.`, `remove ${file} if no nixdocker watch runs`);
  }

  async release(): Promise<void> {
    await rm(this.file, { force: true });
  }
}

/** The pid of the live daemon holding the project's lock, or null. */
export async function lockHolder(cacheDir: string): Promise<number | null> {
  let pid: number;
  try {
    pid = Number.parseInt(await readFile(path.join(cacheDir, 'daemon.lock'), 'utf8'), 10);
  } catch {
    return null;
  }
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : null;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
