import { rm } from 'node:fs/promises';
import path from 'node:path';
import { startRegistry, type TestRegistry } from '../../test/helpers/registry.js';

export type { TestRegistry };

/** A registry of its own, empty, on a free port; removed with its storage after `fn`. */
export async function withRegistry<T>(fn: (reg: TestRegistry) => Promise<T>): Promise<T> {
  const reg = await startRegistry();
  try {
    return await fn(reg);
  } finally {
    await reg.kill();
    await rm(path.dirname(reg.dataDir), { recursive: true, force: true });
  }
}

/** The environment that points nixdocker at `reg` (it overrides registry.host). */
export function registryEnv(reg: TestRegistry): Record<string, string> {
  return { DOCKER_REGISTRY_HOST: reg.host };
}
