import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { rename, rm, utimes, writeFile, chmod } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { computeIdentity, type Identity } from '../../src/identity.js';
import { cleanupProjects, tmpProject, writeFiles } from '../helpers/project.js';

const test = suite('identity');
test.after(cleanupProjects);

const FILES = {
  'env/default.nix': '{ pkgs, ... }: [ pkgs.hello ]\n',
  'env/pkgs.nix': 'import ./set.nix\n',
  'env/lib/set.nix': '{ hello = null; }\n',
  'workdir/local.nix': '[ ]\n',
  'workdir/extra.nix': '[ ]\n',
};

async function idOf(dir: string): Promise<Identity> {
  const { config } = await loadConfig(dir, { env: {} });
  return computeIdentity(config);
}

async function project(extra: Record<string, string> = {}) {
  return tmpProject({ ...FILES, ...extra });
}

test('name and tag are 128-bit lowercase hex, and image is host/namespace/name:tag', async () => {
  const id = await idOf(await project());
  assert.match(id.name, /^[0-9a-f]{32}$/);
  assert.match(id.tag, /^[0-9a-f]{32}$/);
  assert.is(id.image, `localhost:5000/nixdocker/${id.name}:${id.tag}`);
});

test('stable: same content in another directory gives the same name:tag', async () => {
  const a = await idOf(await project());
  const b = await idOf(await project());
  assert.is(a.image, b.image);
});

test('a byte change in an env file changes the name only', async () => {
  const dir = await project();
  const before = await idOf(dir);
  await writeFile(path.join(dir, 'env/lib/set.nix'), '{ hello = null; }\n ');
  const after = await idOf(dir);
  assert.is.not(after.name, before.name);
  assert.is(after.tag, before.tag);
});

test('a byte change in a user file changes the tag only', async () => {
  const dir = await project();
  const before = await idOf(dir);
  await writeFile(path.join(dir, 'workdir/local.nix'), '[ ] \n');
  const after = await idOf(dir);
  assert.is(after.name, before.name);
  assert.is.not(after.tag, before.tag);
});

test('touch and chmod change nothing', async () => {
  const dir = await project();
  const before = await idOf(dir);
  const later = new Date(Date.now() + 3600_000);
  await utimes(path.join(dir, 'env/default.nix'), later, later);
  await utimes(path.join(dir, 'workdir/local.nix'), later, later);
  await chmod(path.join(dir, 'env/pkgs.nix'), 0o600);
  assert.is((await idOf(dir)).image, before.image);
});

test('renaming an env file changes the name', async () => {
  const dir = await project();
  const before = await idOf(dir);
  await rename(path.join(dir, 'env/lib/set.nix'), path.join(dir, 'env/lib/set2.nix'));
  assert.is.not((await idOf(dir)).name, before.name);
});

test('adding or removing an env file changes the name', async () => {
  const dir = await project();
  const before = await idOf(dir);
  await writeFiles(dir, { 'env/notes.txt': 'x' });
  const added = await idOf(dir);
  assert.is.not(added.name, before.name);
  await rm(path.join(dir, 'env/notes.txt'));
  assert.is((await idOf(dir)).name, before.name);
});

test('editor swap, backup and temporary files are ignored', async () => {
  const dir = await project();
  const before = await idOf(dir);
  await writeFiles(dir, {
    'env/.default.nix.swp': 'swap',
    'env/default.nix~': 'backup',
    'env/.#default.nix': 'lock',
    'env/#default.nix#': 'autosave',
    'env/4913': '',
    'env/lib/.DS_Store': 'x',
    'env/default.nix___jb_tmp___': 'x',
    'env/.git/HEAD': 'ref',
    'env/.nfs000000000012ab34': 'nfs',
    'env/lib/.NFS00AF': 'nfs, any case',
    'env/result-bin': 'out link',
    'env/pkgs.nix.orig': 'patch leftover',
  });
  assert.is((await idOf(dir)).image, before.image);
});

test('userConfig order is part of the tag (it decides PATH precedence)', async () => {
  const ab = await project({ '.nixdockerrc.json': '{"userConfig":["workdir/local.nix","workdir/extra.nix"]}' });
  const ba = await project({ '.nixdockerrc.json': '{"userConfig":["workdir/extra.nix","workdir/local.nix"]}' });
  const a = await idOf(ab);
  const b = await idOf(ba);
  assert.is(a.name, b.name);
  assert.is.not(a.tag, b.tag);
});

test('image settings are part of the tag; registry settings are not', async () => {
  const plain = await idOf(await project());
  const cmd = await idOf(await project({ '.nixdockerrc.json': '{"image":{"cmd":["sh"]}}' }));
  const reg = await idOf(await project({ '.nixdockerrc.json': '{"registry":{"host":"r.example","namespace":"team"}}' }));
  assert.is.not(cmd.tag, plain.tag);
  assert.is(reg.tag, plain.tag);
  assert.is(reg.name, plain.name);
  assert.is(reg.image, `r.example/team/${plain.name}:${plain.tag}`);
});

test('SOURCE_DATE_EPOCH (the image\'s created) is part of the tag, not the name', async () => {
  const dir = await project();
  const plain = await idOf(dir);
  process.env.SOURCE_DATE_EPOCH = '1700000000';
  try {
    const dated = await idOf(dir);
    assert.is(dated.name, plain.name);
    assert.is.not(dated.tag, plain.tag);
    assert.is((await idOf(dir)).tag, dated.tag);
  } finally {
    delete process.env.SOURCE_DATE_EPOCH;
  }
});

test('inputs list every file with its own digest and role', async () => {
  const id = await idOf(await project());
  assert.equal(
    id.inputs.map((i) => [i.path, i.role]),
    [['env/default.nix', 'env'], ['env/lib/set.nix', 'env'], ['env/pkgs.nix', 'env'], ['workdir/local.nix', 'user']],
  );
  const { createHash } = await import('node:crypto');
  assert.is(id.inputs[0]!.sha256, createHash('sha256').update(FILES['env/default.nix']).digest('hex'));
});

test('known vector: the hash scheme does not drift by accident', async () => {
  // Pinned on purpose (sha256 of "nixdocker-env-v1\n" + "default.nix\0" + file digest + "\n", cut to
  // 32 hex): a change here means every user's images get new names.
  const id = await idOf(await tmpProject({ 'env/default.nix': '[ ]\n', 'workdir/local.nix': '[ ]\n' }));
  assert.is(id.name, 'e94d58fda1883a2b68aa4e0925974390');
});

test('a nested tree is named in code-unit order of its paths, whatever order the walk finds them in', async () => {
  // "a-b/" < "a.nix" < "a/" < "a0" in code units, while a walk finds a/z/q.nix inside a/, between a/x and a0.
  const files = { 'env/a/x.nix': '1', 'env/a/z/q.nix': '2', 'env/a-b/y.nix': '3', 'env/a.nix': '4', 'env/a0.nix': '5', 'env/default.nix': '[ ]\n' };
  const id = await idOf(await tmpProject({ ...files, 'workdir/local.nix': '[ ]\n' }));
  const { createHash } = await import('node:crypto');
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  const rels = Object.keys(files).map((f) => f.slice('env/'.length)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  assert.equal(rels, ['a-b/y.nix', 'a.nix', 'a/x.nix', 'a/z/q.nix', 'a0.nix', 'default.nix']);
  const name = createHash('sha256').update('nixdocker-env-v1\n');
  for (const rel of rels) name.update(`${rel}\0${sha(files[`env/${rel}` as keyof typeof files])}\n`);
  assert.is(id.name, name.digest('hex').slice(0, 32));
  assert.equal(
    id.inputs.filter((i) => i.role === 'env').map((i) => i.path),
    rels.map((r) => `env/${r}`),
  );
});

test.run();
