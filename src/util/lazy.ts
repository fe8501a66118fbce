import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/**
 * A CommonJS dependency loaded on first use. Start-up time matters here: a
 * no-op `nixdocker build` must answer in well under 300 ms, and dockerode
 * alone takes ~180 ms to load, while a build found up to date never needs it.
 */
export function lazy<T>(id: string): () => T {
  let mod: T | undefined;
  return () => (mod ??= require(id) as T);
}
