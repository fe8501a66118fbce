// @ts-check
// A complete nixdocker plugin: keeps a changelog of every image that became
// ready, and lets a user pause builds by creating a file named PAUSE in the
// project. Install it (npm install ./nixdocker-plugin-changelog, or from a
// registry) and list it with its options:
//   "plugins": ["push", ["nixdocker-plugin-changelog", { "file": "images.log" }]]
// As a single file it works too: "plugins": ["push", "./changelog.mjs"].
import { appendFile, access } from 'node:fs/promises';
import path from 'node:path';

/** @typedef {import('nixdocker').Plugin} Plugin */

/** @implements {Plugin} */
export default class ChangelogPlugin {
  name = 'changelog';

  /** @param {{ file?: string }} [options] the options of the config entry */
  constructor(options = {}) {
    this.file = options.file ?? 'images.log';
  }

  /**
   * @param {import('nixdocker').PluginHooks} hooks
   * @param {import('nixdocker').PluginContext} context
   */
  apply(hooks, context) {
    const project = context.config.projectDir;

    // Bail hook: answering with { reason } skips the build, undefined lets it go on.
    hooks.beforeBuild.tapPromise(this.name, async (trigger) => {
      const paused = await access(path.join(project, 'PAUSE')).then(() => true, () => false);
      return paused ? { reason: `PAUSE exists; build ${trigger.buildId} skipped` } : undefined;
    });

    // Series hook: runs after the image is pushed (or loaded), for the newest build only.
    hooks.imageReady.tapPromise(this.name, async (image) => {
      const seconds = Object.values(image.durations).reduce((a, b) => a + b, 0) / 1000;
      const changed = image.changed.length > 0 ? image.changed.join(' ') : 'first build';
      const where = image.destinations.join('+') || 'nowhere';
      await appendFile(path.join(project, this.file), `${image.image} ${image.digest} ${seconds.toFixed(1)}s ${where} ${changed}\n`);
      context.log.info(`changelog: recorded ${image.tag.slice(0, 12)}`);
    });

    hooks.buildFailed.tapPromise(this.name, async (failure) => {
      await appendFile(path.join(project, this.file), `FAILED build ${failure.buildId}: ${failure.message.split('\n')[0]}\n`);
    });
  }
}
