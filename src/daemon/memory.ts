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

/**
 * Keeps V8's young generation at its initial size (two 1 MiB semi-spaces)
 * for the daemon's life. A build's allocation rate grows it to two 16 MiB
 * semi-spaces, and V8 never shrinks it again while nothing allocates: about
 * 30 MB resident that an idle daemon holds for nothing. A build's time goes
 * to Nix, gzip and the network, not to scavenges. The growth factor is read
 * at each scavenge, so setting it at run time works (unlike the size flags).
 */
export function limitYoungGeneration(): void {
  try {
    setFlagsFromString('--semi-space-growth-factor=1');
  } catch {
    // an engine without the flag: the daemon only holds more memory
  }
}
