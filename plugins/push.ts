import type { Plugin } from '../src/hooks.js';

/**
 * push: sends every new image to the registry (registry.host). On by
 * default; without it, images are loaded into the engine instead. A failed
 * push fails the build: the registry keeps its last complete image.
 */
export default function push(): Plugin {
  return {
    name: 'push',
    apply(hooks, context) {
      hooks.built.tapPromise('push', async (image) => {
        await context.push(image);
      });
    },
  };
}
