import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { dockerConfigPath, dockerCredentials, normaliseHostKey } from '../../src/registry/docker-config.js';
import { resolveCredentials } from '../../src/registry/credentials.js';
import { UserError } from '../../src/errors.js';
import { cleanupDirs, tmpDir } from '../helpers/registry.js';

const test = suite('registry docker-config');
test.after(cleanupDirs);

const b64 = (s: string) => Buffer.from(s).toString('base64');

async function configDir(config: unknown): Promise<string> {
  const dir = await tmpDir('nixdocker-docker-config-');
  await writeFile(path.join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

/** A bin dir with `docker-credential-test` that records its stdin and prints `output` (exit `code`). */
async function fakeHelper(output: string, code = 0): Promise<{ bin: string; stdinFile: string }> {
  const bin = await tmpDir('nixdocker-helper-');
  const stdinFile = path.join(bin, 'stdin');
  await writeFile(
    path.join(bin, 'docker-credential-test'),
    `#!/bin/sh\n[ "$1" = get ] || exit 3\ncat > '${stdinFile}'\nprintf '%s' '${output}'\nexit ${code}\n`,
    { mode: 0o755 },
  );
  return { bin, stdinFile };
}

test('config path: $DOCKER_CONFIG/config.json, else ~/.docker/config.json', () => {
  assert.is(dockerConfigPath({ DOCKER_CONFIG: '/x/y' }), '/x/y/config.json');
  assert.is(dockerConfigPath({ HOME: '/home/u' }), '/home/u/.docker/config.json');
});

test('host keys match with and without scheme and path; Hub aliases are one', () => {
  assert.is(normaliseHostKey('https://reg.example:5000/v1/'), 'reg.example:5000');
  assert.is(normaliseHostKey('http://localhost:5000'), 'localhost:5000');
  assert.is(normaliseHostKey('reg.example'), 'reg.example');
  assert.is(normaliseHostKey('https://index.docker.io/v1/'), 'docker.io');
  assert.is(normaliseHostKey('registry-1.docker.io'), 'docker.io');
});

test('auths: base64 auth under an https:// key with a path', async () => {
  const DOCKER_CONFIG = await configDir({ auths: { 'https://reg.example:5000/v1/': { auth: b64('alice:pa:ss') }, 'other:1': { auth: b64('bob:x') } } });
  const c = await dockerCredentials('reg.example:5000', { DOCKER_CONFIG });
  assert.is(c?.username, 'alice');
  assert.is(c?.password, 'pa:ss', 'only the first colon separates user and password');
  assert.match(c?.source ?? '', 'auths["https://reg.example:5000/v1/"]');
  assert.not.match(c?.source ?? '', 'pa:ss');
});

test('auths: username/password fields, identitytoken, and no entry', async () => {
  const DOCKER_CONFIG = await configDir({
    auths: { 'http://a.example': { username: 'u', password: 'p' }, 'b.example': { auth: b64('u2:'), identitytoken: 'refresh-me' }, 'c.example': {} },
  });
  assert.equal(await dockerCredentials('a.example', { DOCKER_CONFIG }).then((c) => [c?.username, c?.password]), ['u', 'p']);
  const b = await dockerCredentials('b.example', { DOCKER_CONFIG });
  assert.is(b?.identityToken, 'refresh-me');
  assert.is(b?.password, undefined);
  assert.is(await dockerCredentials('c.example', { DOCKER_CONFIG }), null);
  assert.is(await dockerCredentials('d.example', { DOCKER_CONFIG }), null);
});

test('no config file is no credentials; a broken one is a UserError naming the file', async () => {
  const empty = await tmpDir();
  assert.is(await dockerCredentials('a.example', { DOCKER_CONFIG: empty }), null);
  const broken = await configDir('{ not json');
  const err = await dockerCredentials('a.example', { DOCKER_CONFIG: broken }).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as Error).message, path.join(broken, 'config.json'));
});

test('credHelpers: runs docker-credential-<helper> get with the host on stdin, before auths', async () => {
  const { bin, stdinFile } = await fakeHelper('{"ServerURL":"reg.example:5000","Username":"helper-user","Secret":"helper-secret"}');
  const DOCKER_CONFIG = await configDir({ credHelpers: { 'reg.example:5000': 'test' }, auths: { 'reg.example:5000': { auth: b64('file-user:x') } } });
  const c = await dockerCredentials('reg.example:5000', { DOCKER_CONFIG, PATH: `${bin}:${process.env.PATH}` });
  assert.equal([c?.username, c?.password], ['helper-user', 'helper-secret']);
  assert.match(c?.source ?? '', 'credHelpers: test');
  assert.is(await readFile(stdinFile, 'utf8'), 'reg.example:5000');
});

test('credHelpers: "<token>" user is an identity token; "credentials not found" is none', async () => {
  const tok = await fakeHelper('{"ServerURL":"r","Username":"<token>","Secret":"idtok"}');
  const DOCKER_CONFIG = await configDir({ credHelpers: { 'https://r.example': 'test' } });
  const c = await dockerCredentials('r.example', { DOCKER_CONFIG, PATH: `${tok.bin}:${process.env.PATH}` });
  assert.is(c?.identityToken, 'idtok');
  const none = await fakeHelper('credentials not found in native keychain', 1);
  assert.is(await dockerCredentials('r.example', { DOCKER_CONFIG, PATH: `${none.bin}:${process.env.PATH}` }), null);
});

test('credsStore is asked for every host; a missing helper is a UserError naming it', async () => {
  const { bin } = await fakeHelper('{"Username":"store-user","Secret":"s"}');
  const DOCKER_CONFIG = await configDir({ credsStore: 'test', auths: { 'reg.example': {} } });
  assert.is((await dockerCredentials('reg.example', { DOCKER_CONFIG, PATH: `${bin}:${process.env.PATH}` }))?.username, 'store-user');
  const err = await dockerCredentials('reg.example', { DOCKER_CONFIG, PATH: '/nonexistent' }).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as Error).message, 'docker-credential-test');
});

test('a failing helper: UserError with its stderr, never its stdout', async () => {
  const bin = await tmpDir('nixdocker-helper-');
  await writeFile(path.join(bin, 'docker-credential-test'), `#!/bin/sh\necho 'STDOUT-SECRET'\necho 'keychain locked' >&2\nexit 2\n`, { mode: 0o755 });
  const DOCKER_CONFIG = await configDir({ credHelpers: { 'reg.example': 'test' } });
  const err = await dockerCredentials('reg.example', { DOCKER_CONFIG, PATH: `${bin}:${process.env.PATH}` }).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as Error).message, 'keychain locked');
  assert.not.match((err as Error).message, 'STDOUT-SECRET');
});

test('order: explicit option, then NIXDOCKER_REGISTRY_USER/PASSWORD, then the docker config', async () => {
  const DOCKER_CONFIG = await configDir({ auths: { 'reg.example': { auth: b64('file:f') } } });
  const env = { DOCKER_CONFIG, NIXDOCKER_REGISTRY_USER: 'env', NIXDOCKER_REGISTRY_PASSWORD: 'e' };
  assert.is((await resolveCredentials('reg.example', { username: 'opt', password: 'o' }, env))?.username, 'opt');
  assert.is((await resolveCredentials('reg.example', undefined, env))?.username, 'env');
  assert.is((await resolveCredentials('reg.example', undefined, { DOCKER_CONFIG }))?.username, 'file');
  assert.is(await resolveCredentials('reg.example', undefined, { DOCKER_CONFIG: await tmpDir() }), null);
});

test('a malformed config.json is reported by line and column, never with its text (it holds passwords)', async () => {
  const secret = 'hunter2-very-secret';
  for (const text of [
    `{"auths": {"r.example": {"auth": "${b64(`user:${secret}`)}" "x": 1}}}`,
    `{"auths": {"r.example": {"username": "u", "password": ${secret}}}}`,
    `{\n "auths": {\n  "r.example": {"password": "${secret}\n`,
  ]) {
    const dir = await configDir(text);
    try {
      await dockerCredentials('r.example', { DOCKER_CONFIG: dir });
      assert.unreachable('parsed');
    } catch (err) {
      assert.instance(err, UserError);
      const shown = (err as UserError).format();
      assert.match(shown, /not valid JSON \(line \d+, column \d+: /);
      assert.not.match(shown, secret.slice(0, 6));
      assert.not.match(shown, b64(`user:${secret}`).slice(0, 8));
    }
  }
});

test.run();
