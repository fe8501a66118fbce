import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | null | undefined;

/**
 * A full garbage collection once the daemon is idle again. A build grows the
 * heap (layer buffers, archive streams) and V8 keeps it grown while nothing
 * allocates; an idle daemon should hold only what it needs. The flag is set
 * at run time, so `node` needs no --expose-gc.
 */
export function collectIdleGarbage(): void {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as () => void;
    } catch {
      gc = null;
    }
  }
  gc?.();
}
