import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import type { Config } from '../config/types.js';
import { UserError } from '../errors.js';
import { isIgnoredDir, isIgnoredFile } from '../ignore.js';

/**
 * Watches exactly the inputs of the identity: everything under envDir and
 * each userConfig file, through one chokidar watcher on the project with a
 * filter, so a user file that an editor deletes and re-creates (atomic save)
 * is seen again, and nothing else of the project (workdir/user, .git,
 * node_modules, swap files) costs a watch.
 */
export class InputWatcher {
  private watcher: FSWatcher | null = null;
  /** True once inotify ran out of watches and the watcher polls instead. */
  polling = false;

  constructor(
    private readonly config: Config,
    /** Called with a project-relative path on every add, change or removal. */
    private readonly onChange: (rel: string) => void,
    /**
     * A runtime error of the watcher, explained (a UserError where the user
     * can fix it). The watcher goes on: with polling after ENOSPC, as it was
     * otherwise.
     */
    private readonly onError: (err: Error) => void = () => {},
  ) {}

  /** Resolves once the initial scan is done and changes are being watched. */
  async start(): Promise<void> {
    try {
      await this.open(false);
    } catch (err) {
      if (!isWatchLimit(err)) {
        await this.close();
        throw watchError(err, this.config.projectDir);
      }
      await this.fallBackToPolling(err);
    }
  }

  /** Every later error is reported; a watch limit switches to polling once. */
  private handle(err: unknown): void {
    if (isWatchLimit(err) && !this.polling) {
      this.fallBackToPolling(err).catch((e: unknown) => this.onError(watchError(e, this.config.projectDir)));
      return;
    }
    this.onError(watchError(err, this.config.projectDir));
  }

  private async fallBackToPolling(cause: unknown): Promise<void> {
    this.polling = true;
    this.onError(watchLimitError(cause));
    await this.watcher?.close();
    this.watcher = null;
    await this.open(true);
  }

  private async open(polling: boolean): Promise<void> {
    const { projectDir, envDir, userConfig } = this.config;
    const userFiles = new Set(userConfig);
    // Directories that lead to an input must be watched for it to be seen.
    const ancestors = new Set<string>();
    for (const rel of [envDir, ...userConfig]) {
      for (let d = path.posix.dirname(rel); d !== '.' && d !== ''; d = path.posix.dirname(d)) ancestors.add(d);
    }
    const relevant = (abs: string): boolean => {
      const rel = path.relative(projectDir, abs).split(path.sep).join('/');
      if (rel === '' || userFiles.has(rel) || ancestors.has(rel)) return true;
      if (rel === envDir) return true;
      if (!rel.startsWith(`${envDir}/`)) return false;
      // The same exclusions as the identity hash: ignored folders anywhere, ignored file names last.
      const parts = rel.slice(envDir.length + 1).split('/');
      return !parts.some(isIgnoredDir) && !isIgnoredFile(parts[parts.length - 1]!);
    };
    const { watch } = await import('chokidar');
    this.watcher = watch(projectDir, {
      ignoreInitial: true,
      ignored: (p: string) => !relevant(p),
      // An editor's rename-over-the-file save arrives as one change, not unlink + add.
      atomic: 100,
      ...(polling ? { usePolling: true, interval: 500 } : {}),
    });
    const emit = (abs: string) => {
      const rel = path.relative(projectDir, abs).split(path.sep).join('/');
      if (userFiles.has(rel) || rel.startsWith(`${envDir}/`)) this.onChange(rel);
    };
    this.watcher.on('add', emit).on('change', emit).on('unlink', emit).on('unlinkDir', emit);
    // One listener for the watcher's whole life: before 'ready' an error fails
    // the start (unless it is the watch limit, handled by start), after it each
    // one is reported, so a second error is never an unhandled 'error' event.
    const w = this.watcher;
    let ready = false;
    let failStart: ((err: unknown) => void) | null = null;
    w.on('error', (err: unknown) => {
      if (this.watcher !== w) return;
      if (!ready) failStart?.(err);
      else this.handle(err);
    });
    await new Promise<void>((resolve, reject) => {
      failStart = reject;
      w.once('ready', () => {
        ready = true;
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    this.watcher = null;
  }
}

/** inotify is out of watches (fs.inotify.max_user_watches), or of instances. */
function isWatchLimit(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return code === 'ENOSPC' || code === 'EMFILE';
}

function watchLimitError(cause: unknown): UserError {
  const code = (cause as NodeJS.ErrnoException)?.code ?? 'ENOSPC';
  return new UserError(
    `The system ran out of inotify watches (${code}), so nixdocker watches the inputs by polling every 0.5 s instead: changes still build, a little later and at some CPU cost.`,
    code === 'EMFILE'
      ? 'raise fs.inotify.max_user_instances (`sudo sysctl fs.inotify.max_user_instances=1024`; persist it in /etc/sysctl.d/), or close other watchers'
      : 'raise fs.inotify.max_user_watches (`sudo sysctl fs.inotify.max_user_watches=524288`; persist it in /etc/sysctl.d/), or close other watchers',
    { cause },
  );
}

function watchError(err: unknown, projectDir: string): Error {
  if (err instanceof UserError) return err;
  const e = err as NodeJS.ErrnoException;
  if (e?.code === 'EACCES' || e?.code === 'EPERM') {
    return new UserError(`Cannot watch ${e.path ?? projectDir}: permission denied (${e.code}).`, 'give your user read access to the project\'s inputs', { cause: err });
  }
  return new UserError(
    `The file watcher failed: ${e?.message ?? String(err)}${e?.code ? ` (${e.code})` : ''}.`,
    'restart `nixdocker watch`; if it happens again, run it with --log-level debug and report the log',
    { cause: err },
  );
}
