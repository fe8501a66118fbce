import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Writable } from 'node:stream';
import { inspect } from 'node:util';
import { RegistryClient } from '../../src/registry/client.js';
import { UserError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { MEDIA_TYPES, type BlobSource } from '../../src/registry/types.js';
import { cleanupDirs, sha256, startRegistry, startTokenServer, stopRegistries, tmpDir, type TestRegistry, type TokenServer } from '../helpers/registry.js';

const USER = 'pusher';
const PASSWORD = 'Sup3r-s3cret-PASSWORD-9f1c';
const SECRETS = [PASSWORD, Buffer.from(`${USER}:${PASSWORD}`).toString('base64')];

/** A debug-level pino logger whose JSON lines land in `lines`. */
function capturedLogger() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ level: 'debug', json: true, stream }), lines };
}

function blobOf(text: string): BlobSource {
  const data = Buffer.from(text);
  return { digest: sha256(data), size: data.length, open: () => Readable.from([data]) };
}

function assertNoSecret(what: string, text: string): void {
  for (const s of SECRETS) assert.not.ok(text.includes(s), `${what} contains a secret: ${text}`);
}

/** Everything a user or a log could see of an error: message, hint, stack, cause. */
function errorText(err: unknown): string {
  return `${inspect(err, { depth: 5 })} ${err instanceof UserError ? err.format() : ''} ${JSON.stringify(err)}`;
}

async function dockerConfigDir(config: unknown): Promise<string> {
  const dir = await tmpDir('nixdocker-docker-config-');
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

async function pushImage(c: RegistryClient, repo: string): Promise<string> {
  const config = Buffer.from('{"os":"linux"}');
  const layer = Buffer.from(`a layer of ${repo}`);
  await c.pushBlob(repo, blobOf(config.toString()));
  await c.pushBlob(repo, blobOf(layer.toString()));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA_TYPES.ociManifest,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }],
    }),
  );
  return c.putManifest(repo, 'latest', manifest, MEDIA_TYPES.ociManifest);
}

// --- htpasswd (Basic) --------------------------------------------------------

const basic = suite('registry client with htpasswd (Basic) auth');
let reg: TestRegistry;
const clients: RegistryClient[] = [];
const make = (opts: ConstructorParameters<typeof RegistryClient>[0]) => {
  const c = new RegistryClient(opts);
  clients.push(c);
  return c;
};

basic.before(async () => {
  reg = await startRegistry({ htpasswd: { user: USER, password: PASSWORD } });
});
basic.after(async () => {
  for (const c of clients.splice(0)) c.close();
  await stopRegistries();
});

basic('credentials from the docker config file (auths key with http:// prefix) push an image; nothing secret is logged', async () => {
  const DOCKER_CONFIG = await dockerConfigDir({ auths: { [`http://${reg.host}`]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } });
  const { logger, lines } = capturedLogger();
  const c = make({ host: reg.host, env: { DOCKER_CONFIG }, logger });
  const digest = await pushImage(c, 'team/basic');
  assert.is(await c.getManifestDigest('team/basic', 'latest'), digest);
  assert.equal(await c.listTags('team/basic'), ['latest']);
  // One challenge, then Basic goes with every request: 401 once, never again.
  assert.is(lines.filter((l) => JSON.parse(l).status === 401).length, 1);
  assert.ok(lines.some((l) => JSON.parse(l).method === 'PUT'), 'requests are logged at debug level');
  for (const l of lines) assertNoSecret('log line', l);
});

basic('without credentials: a UserError naming the host, with the login hint', async () => {
  const DOCKER_CONFIG = await dockerConfigDir({ auths: { 'other.example:5000': { auth: Buffer.from('x:y').toString('base64') } } });
  const c = make({ host: reg.host, env: { DOCKER_CONFIG } });
  const err = await c.getManifestDigest('team/basic', 'latest').catch((e: unknown) => e);
  assert.instance(err, UserError);
  const e = err as UserError;
  assert.match(e.message, reg.host);
  assert.match(e.message, 'registry.host');
  assert.match(e.message, /none were found/);
  assert.is(e.hint, `log in with docker login ${reg.host} or set NIXDOCKER_REGISTRY_USER/NIXDOCKER_REGISTRY_PASSWORD`);
});

basic('wrong password from the environment: a UserError naming the source, never the password', async () => {
  const wrong = `${PASSWORD}-wrong`;
  const { logger, lines } = capturedLogger();
  const c = make({ host: reg.host, env: { NIXDOCKER_REGISTRY_USER: USER, NIXDOCKER_REGISTRY_PASSWORD: wrong }, logger });
  const err = await c.pushBlob('team/basic', blobOf('never stored')).catch((e: unknown) => e);
  assert.instance(err, UserError);
  const e = err as UserError;
  assert.match(e.message, `user "${USER}"`);
  assert.match(e.message, 'NIXDOCKER_REGISTRY_USER');
  assert.match(e.hint ?? '', 'docker login');
  const text = errorText(err);
  assert.not.ok(text.includes(wrong));
  assertNoSecret('error', text);
  for (const l of lines) assert.not.ok(l.includes(wrong) || l.includes(Buffer.from(`${USER}:${wrong}`).toString('base64')));
});

basic('a docker login after a refusal counts: the same client looks the credentials up again', async () => {
  const DOCKER_CONFIG = await dockerConfigDir({ auths: {} });
  const c = make({ host: reg.host, env: { DOCKER_CONFIG } });
  const err = await c.getManifestDigest('team/basic', 'latest').catch((e: unknown) => e);
  assert.instance(err, UserError, 'no credentials yet');
  // What `docker login` writes, while the client (a daemon's) lives on.
  await writeFile(path.join(DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } }));
  const digest = await pushImage(c, 'team/relogin');
  assert.is(await c.getManifestDigest('team/relogin', 'latest'), digest);
});

basic('a credential helper that failed answers later: its failure is not remembered', async () => {
  const bin = await tmpDir('nixdocker-helper-');
  const ready = path.join(bin, 'ready');
  const helper = path.join(bin, 'docker-credential-flaky');
  await writeFile(helper, `#!/bin/sh\nread host\n[ -e ${ready} ] || { echo 'not logged in' >&2; exit 1; }\nprintf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASSWORD}"}' "$host"\n`, { mode: 0o755 });
  const DOCKER_CONFIG = await dockerConfigDir({ credHelpers: { [reg.host]: 'flaky' } });
  const c = make({ host: reg.host, env: { DOCKER_CONFIG, PATH: `${bin}:${process.env.PATH}` } });
  const err = await c.getManifestDigest('team/helper', 'latest').catch((e: unknown) => e);
  // The helper fails first: a UserError naming the helper, the host, its exit code and its stderr.
  assert.instance(err, UserError, errorText(err));
  const e = err as UserError;
  assert.match(e.message, `The credential helper docker-credential-flaky (from `);
  assert.match(e.message, `failed for ${reg.host} with exit code 1: not logged in.`);
  assert.is(e.hint, `check that docker-credential-flaky works (echo ${reg.host} | docker-credential-flaky get), or log in again with docker login`);
  await writeFile(ready, '');
  await pushImage(c, 'team/flaky');
});

basic('credentials from a credential helper named in credHelpers', async () => {
  const bin = await tmpDir('nixdocker-helper-');
  const helper = path.join(bin, 'docker-credential-test');
  await writeFile(helper, `#!/bin/sh\nread host\nprintf '{"ServerURL":"%s","Username":"${USER}","Secret":"${PASSWORD}"}' "$host"\n`, { mode: 0o755 });
  const DOCKER_CONFIG = await dockerConfigDir({ credHelpers: { [reg.host]: 'test' } });
  const { logger, lines } = capturedLogger();
  const c = make({ host: reg.host, env: { DOCKER_CONFIG, PATH: `${bin}:${process.env.PATH}` }, logger });
  await pushImage(c, 'team/helper');
  for (const l of lines) assertNoSecret('log line', l);
});

basic.after(cleanupDirs);
basic.run();

// --- token (Bearer) -----------------------------------------------------------

const bearer = suite('registry client with token (Bearer) auth');
let treg: TestRegistry;
let tokens: TokenServer;

bearer.before(async () => {
  tokens = await startTokenServer({ [USER]: PASSWORD });
  treg = await startRegistry({ token: tokens });
});
bearer.after(async () => {
  for (const c of clients.splice(0)) c.close();
  await stopRegistries();
  await tokens.close();
  await cleanupDirs();
});

bearer('a token per scope from the realm, cached; cross-repository mount asks for both scopes', async () => {
  const { logger, lines } = capturedLogger();
  const c = make({ host: treg.host, env: {}, credentials: { username: USER, password: PASSWORD }, logger });
  await pushImage(c, 'team/one');
  const afterPush = tokens.requests.length;
  assert.ok(afterPush >= 1);
  assert.ok(tokens.requests.every((r) => r.user === USER));
  assert.ok(await c.getManifestDigest('team/one', 'latest'));
  await pushImage(c, 'team/one'); // all 'exists' now, same scope: no new token
  assert.is(tokens.requests.filter((r) => r.scopes.includes('repository:team/one:pull,push')).length, 1);

  const shared = blobOf('a layer of team/one');
  assert.is(await c.pushBlob('team/two', shared, { mountFrom: ['team/one'] }), 'mounted');
  assert.ok(tokens.requests.some((r) => r.scopes.includes('repository:team/two:pull,push') && r.scopes.includes('repository:team/one:pull')));
  for (const l of lines) assertNoSecret('log line', l);
});

bearer('parallel pushes that meet the same challenge share one token request', async () => {
  const c = make({ host: treg.host, env: {}, credentials: { username: USER, password: PASSWORD } });
  const blobs = ['p1', 'p2', 'p3', 'p4'].map((t) => blobOf(`parallel ${t}`));
  const results = await Promise.all(blobs.map((b) => c.pushBlob('team/parallel', b)));
  assert.equal(results, ['uploaded', 'uploaded', 'uploaded', 'uploaded']);
  assert.is(tokens.requests.filter((r) => r.scopes.includes('repository:team/parallel:pull,push')).length, 1);
});

bearer('anonymous: the token grants nothing, so a UserError with the login hint', async () => {
  const c = make({ host: treg.host, env: { DOCKER_CONFIG: await tmpDir() } });
  const err = await c.pushBlob('team/anon', blobOf('anonymous')).catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, treg.host);
  assert.match((err as UserError).hint ?? '', 'docker login');
});

bearer('a wrong password at the token realm: a UserError, never the password', async () => {
  const wrong = `${PASSWORD}-nope`;
  const { logger, lines } = capturedLogger();
  const c = make({ host: treg.host, env: { NIXDOCKER_REGISTRY_USER: USER, NIXDOCKER_REGISTRY_PASSWORD: wrong }, logger });
  const err = await c.getManifestDigest('team/one', 'latest').catch((e: unknown) => e);
  assert.instance(err, UserError);
  assert.match((err as UserError).message, `user "${USER}"`);
  assert.not.ok(errorText(err).includes(wrong));
  for (const l of lines) assert.not.ok(l.includes(wrong));
});

bearer('anonymous first, then a docker login: the same client gets a token with the new credentials', async () => {
  const DOCKER_CONFIG = await dockerConfigDir({ auths: {} });
  const c = make({ host: treg.host, env: { DOCKER_CONFIG } });
  const err = await c.pushBlob('team/later', blobOf('before login')).catch((e: unknown) => e);
  assert.instance(err, UserError);
  await writeFile(path.join(DOCKER_CONFIG, 'config.json'), JSON.stringify({ auths: { [treg.host]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString('base64') } } }));
  assert.is(await c.pushBlob('team/later', blobOf('after login')), 'uploaded');
  assert.ok(tokens.requests.some((r) => r.user === USER && r.scopes.includes('repository:team/later:pull,push')));
});

bearer.run();
