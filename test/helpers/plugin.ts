import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { DEFAULTS } from '../../src/config/defaults.js';
import type { Config } from '../../src/config/types.js';
import { createHooks, tapOnly, type Hooks, type ImageDescription, type Plugin, type PluginContext } from '../../src/hooks.js';

export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

export interface AppliedPlugin {
  /** The full hooks: the test plays the core and calls them. */
  hooks: Hooks;
  context: PluginContext;
  /** Every line the plugin logged, parsed. */
  logs: LogRecord[];
  /** Logged records at `warn` (pino level 40). */
  warnings(): LogRecord[];
}

/**
 * Applies a plugin to real hooks, through the tap-only view the core hands
 * out, with a debug-level pino logger that records into `logs`. The core
 * services (runInImage, pull, registry, ...) throw unless given: a
 * plugin test says what it needs.
 */
export async function applyPlugin(plugin: Plugin, overrides: Partial<PluginContext> & { config?: Partial<Config> } = {}): Promise<AppliedPlugin> {
  const logs: LogRecord[] = [];
  const log = pino({ level: 'debug', base: undefined }, { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) }).child({ plugin: plugin.name });
  const projectDir = path.join(tmpdir(), 'nixdocker-plugin-test');
  const cacheDir = overrides.cacheDir ?? path.join(projectDir, '.nixdocker');
  const missing = (name: string) => () => {
    throw new Error(`${name} is not available in this test`);
  };
  const context: PluginContext = {
    log,
    cacheDir,
    runInImage: () => Promise.reject(new Error('runInImage is not available in this test')),
    reportCommand: () => Promise.reject(new Error('reportCommand is not available in this test')),
    pull: () => Promise.reject(new Error('pull is not available in this test')),
    registry: missing('registry'),
    engine: missing('engine'),
    collectGarbage: () => Promise.reject(new Error('collectGarbage is not available in this test')),
    ...overrides,
    config: { ...DEFAULTS, projectDir, configFile: null, userConfigFile: path.join(projectDir, 'user-config.json'), origins: {}, ...overrides.config, cacheDir },
  };
  const hooks = createHooks();
  await plugin.apply(tapOnly(hooks), context);
  return { hooks, context, logs, warnings: () => logs.filter((l) => l.level === 40) };
}

/** A realistic image description; fields can be overridden. */
export function imageDescription(over: Partial<ImageDescription> = {}): ImageDescription {
  const name = '3f9a1c7be2d04a6f8e1b5c9d7a2f4e60';
  const tag = 'b81e0d6c4a9f27e35d1c8b0a6e4f2d97';
  return {
    buildId: 1,
    name,
    tag,
    image: `127.0.0.1:5000/nixdocker/${name}:${tag}`,
    digest: 'sha256:5d41402abc4b2a76b9719d911017c592ae2b7b3c4e1f8a5d9c0b6e2f7a1d3c48',
    platforms: [{ platform: 'linux/amd64', digest: 'sha256:5d41402abc4b2a76b9719d911017c592ae2b7b3c4e1f8a5d9c0b6e2f7a1d3c48', built: true }],
    layers: [
      { digest: 'sha256:1111111111111111111111111111111111111111111111111111111111111111', size: 48_213_004, kind: 'base' },
      { digest: 'sha256:2222222222222222222222222222222222222222222222222222222222222222', size: 1_204_117, kind: 'user' },
      { digest: 'sha256:3333333333333333333333333333333333333333333333333333333333333333', size: 10_240, kind: 'custom' },
    ],
    size: 49_427_361,
    durations: { hash: 12, registryCheck: 40, evaluate: 1830, build: 9120, closure: 210, assemble: 1460, push: 2110 },
    changed: ['workdir/local.nix'],
    destinations: ['registry'],
    ...over,
  };
}
