import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { mkdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/types.js';
import { UserError } from '../../src/errors.js';
import { computeIdentity } from '../../src/identity.js';
import { stageInputs } from '../../src/nix/inputs.js';
import { HeldDir, readOnce, ReadRefused } from '../../src/util/read-once.js';
import { cleanupProjects, tmpProject } from '../helpers/project.js';
import { tmpDir, cleanupDirs } from '../helpers/registry.js';

const test = suite('input files: one read, containment at every read');
test.after(async () => {
  await cleanupProjects();
  await cleanupDirs();
});

const FILES = { 'env/default.nix': '[ ]\n', 'env/lib/a.nix': '{ }\n', 'workdir/local.nix': '[ ]\n' };
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

async function setup(extra: Record<string, string> = {}): Promise<{ dir: string; config: Config }> {
  const dir = await tmpProject({ ...FILES, ...extra });
  const { config } = await loadConfig(dir, { env: {} });
  return { dir, config };
}

async function userError(p: Promise<unknown>): Promise<UserError> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, UserError, String((err as Error)?.stack));
    return err as UserError;
  }
  throw new Error('expected a UserError');
}

/** Outside the project: a file whose content must never show up anywhere. */
async function secretFile(): Promise<string> {
  const file = path.join(await tmpDir('nixdocker-outside-'), 'secret.txt');
  await writeFile(file, 'TOP-SECRET-CONTENT\n');
  return file;
}

test('the staged bytes are the bytes hashed, even when the file changes after the read', async () => {
  const { dir, config } = await setup();
  const id = await computeIdentity(config);
  await writeFile(path.join(dir, 'workdir/local.nix'), '[ "changed after hashing" ]\n');
  await writeFile(path.join(dir, 'env/lib/a.nix'), '{ changed = true; }\n');
  const staged = await stageInputs(id);
  for (const input of id.inputs) {
    const f = staged.find((s) => s.path === `project/${input.path}`);
    assert.ok(f, `${input.path} staged`);
    assert.is(sha(f!.bytes), input.sha256, `${input.path}: staged bytes hash to the identity's digest`);
  }
  assert.is(staged.find((s) => s.path === 'project/workdir/local.nix')!.bytes.toString(), '[ ]\n');
  assert.not.ok(JSON.stringify(id).includes('[ ]'), 'the bytes never reach JSON');
});

test('a concurrent rewriter never makes a kept byte disagree with its digest', async () => {
  const { dir, config } = await setup();
  const file = path.join(dir, 'workdir/local.nix');
  const contents = Array.from({ length: 4 }, (_, i) => `[ ${'x'.repeat(20_000 * (i + 1))} ]\n`);
  let stop = false;
  const writer = (async () => {
    for (let i = 0; !stop; i++) {
      await writeFile(`${file}.tmp`, contents[i % contents.length]!);
      await rename(`${file}.tmp`, file);
    }
  })();
  try {
    for (let i = 0; i < 30; i++) {
      const id = await computeIdentity(config);
      const input = id.inputs.find((x) => x.path === 'workdir/local.nix')!;
      const bytes = id.contents!.get('workdir/local.nix');
      assert.is(sha(bytes), input.sha256);
      assert.ok([FILES['workdir/local.nix'], ...contents].includes(bytes.toString()), `a whole version, never a mix: ${bytes.length} bytes: ${bytes.toString().slice(0, 30)}`);
    }
  } finally {
    stop = true;
    await writer;
  }
});

test('a FIFO in envDir is refused by type, without blocking', async () => {
  const { dir, config } = await setup();
  await execa('mkfifo', [path.join(dir, 'env/pipe')]);
  const err = await userError(computeIdentity(config));
  assert.match(err.message, 'env/pipe is a FIFO (named pipe)');
  assert.match(err.format(), 'fix: replace env/pipe with a regular file, or remove it');
  // `hash` ends too (a child process, so a hang would be a timeout, not a stuck suite).
  const { runCli } = await import('../helpers/project.js');
  const r = await runCli(['-C', dir, 'hash'], { timeoutMs: 20_000 });
  assert.is(r.exitCode, 1, r.stderr);
  assert.match(r.stderr, 'FIFO');
});

test('a user file swapped for a FIFO or a device is refused by type before any read', async () => {
  const { dir, config } = await setup();
  const file = path.join(dir, 'workdir/local.nix');
  await rm(file);
  await execa('mkfifo', [file]);
  assert.match((await userError(computeIdentity(config))).message, 'not a file');
  await rm(file);
  await symlink('/dev/zero', file);
  const err = await userError(computeIdentity(config));
  assert.match(err.message, 'outside the project directory');
});

test('a user file swapped for a symlink outside the project: the same error as at load, nothing read', async () => {
  const { dir, config } = await setup();
  const secret = await secretFile();
  await symlink(secret, path.join(dir, 'x'));
  await rename(path.join(dir, 'x'), path.join(dir, 'workdir/local.nix'));
  const err = await userError(computeIdentity(config));
  const atLoad = await userError(loadConfig(dir, { env: {} }));
  assert.is(err.format(), atLoad.format());
  assert.match(err.message, 'outside the project directory');
  assert.not.match(err.format(), 'TOP-SECRET');
});

test('envDir or workdir swapped for a symlink outside the project is refused at the next read', async () => {
  const { dir, config } = await setup();
  const outside = path.dirname(await secretFile());
  await writeFile(path.join(outside, 'default.nix'), 'TOP-SECRET-CONTENT');
  await rename(path.join(dir, 'env'), path.join(dir, 'env.old'));
  await symlink(outside, path.join(dir, 'env'));
  const envErr = await userError(computeIdentity(config));
  assert.match(envErr.message, '"envDir"');
  assert.match(envErr.message, 'outside the project directory');
  await rm(path.join(dir, 'env'));
  await rename(path.join(dir, 'env.old'), path.join(dir, 'env'));

  await rename(path.join(dir, 'workdir'), path.join(dir, 'workdir.old'));
  await mkdir(path.join(outside, 'w'));
  await writeFile(path.join(outside, 'w/local.nix'), 'TOP-SECRET-CONTENT');
  await symlink(path.join(outside, 'w'), path.join(dir, 'workdir'));
  const userErr = await userError(computeIdentity(config));
  assert.match(userErr.message, '"userConfig[0]"');
  assert.not.match(userErr.format(), 'TOP-SECRET');
});

test('symlinks inside envDir: to a file in the project is read; outside or to a directory is refused', async () => {
  const { dir, config } = await setup({ 'shared/common.nix': '{ shared = 1; }\n' });
  await symlink('../shared/common.nix', path.join(dir, 'env/common.nix'));
  const id = await computeIdentity(config);
  assert.is(id.contents!.get('env/common.nix').toString(), '{ shared = 1; }\n');
  await symlink(await secretFile(), path.join(dir, 'env/leak.nix'));
  assert.match((await userError(computeIdentity(config))).message, 'env/leak.nix is a symlink that points outside');
  await rm(path.join(dir, 'env/leak.nix'));
  await symlink('../shared', path.join(dir, 'env/dirlink'));
  assert.match((await userError(computeIdentity(config))).message, 'env/dirlink is a symlink to a directory');
});

test('a file name that is not UTF-8 is named in the error, not reported as missing', async () => {
  const { dir, config } = await setup();
  // Node cannot create such a name from a string: a shell can (printf with an octal escape).
  await execa('sh', ['-c', `printf '[ ]' > "$(printf '${path.join(dir, 'env')}/caf\\351.nix')"`]);
  const err = await userError(computeIdentity(config));
  assert.match(err.message, 'env/caf\\xE9.nix is not valid UTF-8');
  assert.not.match(err.message, 'ENOENT');
});

test('an aborted signal ends the reading between two files', async () => {
  const { config } = await setup();
  const controller = new AbortController();
  controller.abort(new Error('interrupted by SIGTERM'));
  try {
    await computeIdentity(config, { signal: controller.signal });
    assert.unreachable('should have been aborted');
  } catch (err) {
    assert.is((err as Error).message, 'interrupted by SIGTERM');
  }
});

test('keepContents false keeps no bytes and gives the same identity', async () => {
  const { config } = await setup();
  const kept = await computeIdentity(config);
  const bare = await computeIdentity(config, { keepContents: false });
  assert.is(bare.image, kept.image);
  assert.is(bare.contents, undefined);
  const staged = await stageInputs(bare).then(
    () => null,
    (err: Error) => err,
  );
  assert.match(String(staged?.message), 'without keeping');
});

test('a held directory whose path is swapped for a symlink to outside: its listing and reads stay in the directory it opened', async () => {
  const { dir } = await setup({ 'env/sub/a.nix': '{ inside = 1; }\n' });
  const root = realpathSync(dir);
  const outside = path.dirname(await secretFile());
  const held = HeldDir.open(path.join(root, 'env/sub'), root);
  try {
    await rename(path.join(root, 'env/sub'), path.join(root, 'env.sub.old'));
    await symlink(outside, path.join(root, 'env/sub'));
    assert.equal(held.list().map((e) => e.name), ['a.nix']);
    const r = readOnce(held.entry('a.nix'), { root, limit: 1 << 20, keep: true, scratch: Buffer.alloc(0), listedRegular: true, held: true });
    assert.is(r.bytes!.toString(), '{ inside = 1; }\n');
    // What the path now names is never opened through it.
    assert.throws(() => readOnce(held.entry('secret.txt'), { root, limit: 1 << 20, keep: true, scratch: Buffer.alloc(0), listedRegular: true, held: true }), (e: unknown) => e instanceof ReadRefused && e.code === 'missing');
  } finally {
    held.close();
  }
});

test('a held directory moved out of the project: nothing below it is opened any more', async () => {
  const { dir } = await setup({ 'env/sub/deeper/a.nix': '{ }\n' });
  const root = realpathSync(dir);
  const held = HeldDir.open(path.join(root, 'env/sub'), root);
  try {
    await rename(path.join(root, 'env/sub'), path.join(await tmpDir('nixdocker-outside-'), 'sub'));
    assert.throws(() => held.sub('deeper', root), (e: unknown) => e instanceof ReadRefused && e.code === 'escaped');
  } finally {
    held.close();
  }
  assert.throws(() => HeldDir.open(path.join(root, 'env'), path.join(root, 'workdir')), (e: unknown) => e instanceof ReadRefused && e.code === 'escaped');
});

test('an env subdirectory that is a symlink is never walked into, even where the listing is stale', async () => {
  const { dir } = await setup({ 'env/sub/a.nix': '{ }\n' });
  const root = realpathSync(dir);
  const held = HeldDir.open(path.join(root, 'env'), root);
  try {
    // The listing said "directory"; by the time it is opened it is a symlink (to a directory inside, even).
    await rename(path.join(root, 'env/sub'), path.join(root, 'sub.real'));
    await symlink(path.join(root, 'sub.real'), path.join(root, 'env/sub'));
    assert.throws(() => held.sub('sub', root), (e: unknown) => e instanceof ReadRefused && e.code === 'symlink');
  } finally {
    held.close();
  }
});

test.run();
