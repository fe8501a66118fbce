import { createRequire, Module } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);

/**
 * Modules dockerode loads with itself that nixdocker needs rarely or never:
 * docker-modem requires ssh2 for `ssh://` engines, which instantiates a
 * WebAssembly Poly1305 with 16 MiB of memory and loads native crypto; dockerode
 * requires gRPC and protobufjs for BuildKit sessions, which nixdocker never
 * opens. Loaded, they cost every process that talks to an engine about 10 MB
 * resident, and the daemon keeps them for its whole life (issue 15: idle RSS
 * under 100 MB). Each gets a stand-in that loads the real module on first use.
 */
const DEFERRED: { from: string; id: string; standIn: (real: () => Record<string, unknown>) => unknown }[] = [
  // docker-modem reads `require('ssh2').Client` when it loads and constructs it only for an ssh:// engine.
  {
    from: 'docker-modem',
    id: 'ssh2',
    standIn: (real) => ({
      Client: function Client(...args: unknown[]) {
        return new (real().Client as new (...a: unknown[]) => object)(...args);
      },
    }),
  },
  // dockerode's session.js reads these only inside withSession (a BuildKit build).
  { from: 'dockerode', id: '@grpc/grpc-js', standIn: lazyNamespace },
  { from: 'dockerode', id: '@grpc/proto-loader', standIn: lazyNamespace },
];

function lazyNamespace(real: () => Record<string, unknown>): unknown {
  return new Proxy({}, { get: (_, key) => real()[key as string] });
}

let loaded: typeof Docker | undefined;

/** dockerode, loaded on first use (it takes ~180 ms) and without the modules above until they are used. */
export function dockerode(): typeof Docker {
  if (loaded) return loaded;
  for (const { from, id, standIn } of DEFERRED) {
    let file: string;
    try {
      file = createRequire(require.resolve(from)).resolve(id);
    } catch {
      continue; // laid out otherwise: dockerode loads it as it always does
    }
    if (require.cache[file]) continue;
    let real: Record<string, unknown> | undefined;
    const load = () => {
      if (!real) {
        delete require.cache[file];
        real = require(file) as Record<string, unknown>;
      }
      return real;
    };
    const m = new Module(file);
    m.filename = file;
    m.loaded = true;
    m.exports = standIn(load);
    require.cache[file] = m;
  }
  loaded = require('dockerode') as typeof Docker;
  return loaded;
}
