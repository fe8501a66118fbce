import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execa } from 'execa';
import { REPO_ROOT } from '../helpers/project.js';

const test = suite('dockerode without ssh2 and gRPC until used');

/**
 * Runs `body` in a fresh node (this process may hold the modules already),
 * with connectEngine and `loaded()`: how many of ssh2's client, gRPC's
 * server and protobufjs's root node has read (none of them is a stand-in's file).
 */
async function inFreshNode(body: string): Promise<string> {
  const script = `
    import { createRequire } from 'node:module';
    const { connectEngine } = await import('./dist/src/engine/engine.js');
    const require = createRequire(import.meta.url);
    const loaded = () => Object.keys(require.cache).filter((k) => /node_modules\\/(ssh2\\/lib\\/client|@grpc\\/grpc-js\\/build\\/src\\/server|protobufjs\\/src\\/root)\\.js$/.test(k)).length;
    ${body}`;
  const r = await execa(process.execPath, ['--input-type=module', '--no-deprecation', '-e', script], { cwd: REPO_ROOT, reject: false, timeout: 60_000 });
  assert.is(r.exitCode, 0, r.stderr);
  return r.stdout.trim();
}

test('an engine client over a unix socket loads none of them', async () => {
  const out = await inFreshNode(`connectEngine('unix:///nonexistent.sock'); process.stdout.write(String(loaded()));`);
  assert.is(out, '0');
});

test('an ssh:// engine still reaches ssh2: a closed port is refused by its client', async () => {
  const out = await inFreshNode(`
    try { await connectEngine('ssh://nobody@127.0.0.1:1').ping(); process.stdout.write('answered'); }
    catch (err) { process.stdout.write(String(err.code) + ' ' + loaded()); }`);
  assert.is(out, 'ECONNREFUSED 1');
});

test.run();
