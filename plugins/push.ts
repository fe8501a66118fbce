import type { Plugin } from '../src/index.js';

/**
 * push: sends every new image to the registry (registry.host). On by
 * default; without it, images are loaded into the engine instead. The core
 * pushes (blobs first, the manifest last); this plugin only says where the
 * image goes, through the public `destinations` hook. A failed push fails the
 * build: the registry keeps its last complete image.
 */
export default function push(): Plugin {
  return {
    name: 'push',
    apply(hooks) {
      hooks.destinations.tap('push', (destinations) => (destinations.includes('registry') ? destinations : [...destinations, 'registry']));
    },
  };
}
