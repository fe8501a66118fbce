import path from 'node:path';
import type { FSWatcher } from 'chokidar';
import type { Config } from '../config/types.js';
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

  constructor(
    private readonly config: Config,
    /** Called with a project-relative path on every add, change or removal. */
    private readonly onChange: (rel: string) => void,
  ) {}

  /** Resolves once the initial scan is done and changes are being watched. */
  async start(): Promise<void> {
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
    });
    const emit = (abs: string) => {
      const rel = path.relative(projectDir, abs).split(path.sep).join('/');
      if (userFiles.has(rel) || rel.startsWith(`${envDir}/`)) this.onChange(rel);
    };
    this.watcher.on('add', emit).on('change', emit).on('unlink', emit).on('unlinkDir', emit);
    await new Promise<void>((resolve, reject) => {
      this.watcher!.once('ready', resolve);
      this.watcher!.once('error', reject);
    });
  }

  async close(): Promise<void> {
    await this.watcher?.close();
    this.watcher = null;
  }
}
