import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { cleanupProjects, tmpProject } from '../helpers/project.js';

const test = suite('config');
test.after(cleanupProjects);

const base = { 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' };

async function loadError(files: Record<string, string>, env: NodeJS.ProcessEnv = {}): Promise<UserError> {
  const dir = await tmpProject({ ...base, ...files });
  try {
    await loadConfig(dir, { env });
  } catch (err) {
    assert.instance(err, UserError);
    return err as UserError;
  }
  throw new assert.Assertion({ message: 'expected a UserError', generated: false, operator: 'throws', expects: 'UserError', actual: 'none' });
}

test('defaults apply when no config file exists', async () => {
  const dir = await tmpProject(base);
  const { config, warnings } = await loadConfig(dir, { env: {} });
  assert.is(config.configFile, null);
  assert.is(config.envDir, 'env');
  assert.equal(config.userConfig, ['workdir/local.nix']);
  assert.is(config.registry.host, 'localhost:5000');
  assert.is(config.builder.mode, 'container');
  assert.is(config.watch.debounceMs, 300);
  assert.is(config.cacheDir, path.join(config.projectDir, '.nixdocker'));
  assert.equal(warnings, []);
});

test('found in .nixdockerrc, .nixdockerrc.json, nixdocker.config.mjs and package.json', async () => {
  const variants: Record<string, string> = {
    '.nixdockerrc': '{"registry":{"host":"a.example:1"}}',
    '.nixdockerrc.json': '{"registry":{"host":"a.example:1"}}',
    'nixdocker.config.mjs': 'export default { registry: { host: "a.example:1" } };',
    'package.json': '{"name":"x","nixdocker":{"registry":{"host":"a.example:1"}}}',
  };
  for (const [file, content] of Object.entries(variants)) {
    const dir = await tmpProject({ ...base, [file]: content });
    const { config } = await loadConfig(dir, { env: {} });
    assert.is(config.registry.host, 'a.example:1', file);
    assert.is(path.basename(config.configFile ?? ''), file);
  }
});

test('unknown key: names the file, the key and a suggestion', async () => {
  const err = await loadError({ '.nixdockerrc.json': '{"registry":{"hots":"x"}}' });
  assert.match(err.message, '.nixdockerrc.json');
  assert.match(err.message, '"registry.hots" is not a known setting');
  assert.match(err.message, 'did you mean "registry.host"');
  const top = await loadError({ '.nixdockerrc.json': '{"userconfig":[]}' });
  assert.match(top.message, '"userconfig" is not a known setting (did you mean "userConfig"?)');
});

test('wrong types: every problem is listed with what is expected', async () => {
  const err = await loadError({
    '.nixdockerrc.json': JSON.stringify({ envDir: 3, builder: { mode: 'remote' }, watch: { debounceMs: -1 }, userConfig: 'a.nix', registry: 'x' }),
  });
  assert.match(err.message, '"envDir" expected a non-empty string, got number 3');
  assert.match(err.message, '"builder.mode" expected "container" or "local", got "remote"');
  assert.match(err.message, '"watch.debounceMs" expected an integer from 0 to 60000');
  assert.match(err.message, '"userConfig" expected an array of strings, got "a.nix"');
  assert.match(err.message, '"registry" expected an object');
});

test('malformed JSON names the file', async () => {
  const err = await loadError({ '.nixdockerrc.json': '{"envDir": "env",}' });
  assert.match(err.message, '.nixdockerrc.json');
});

test('a JSON syntax error keeps its line and column', async () => {
  const err = await loadError({ '.nixdockerrc.json': '{\n  "envDir": "env",\n  "registry": { "host": "x" }\n  "workdir": "w"\n}\n' });
  assert.match(err.message, '.nixdockerrc.json');
  assert.match(err.message, /line 4, column 3: Expected ',' or '\}' after property value/);
});

test('a config file holding null (or nothing) is an error, not the defaults', async () => {
  const nul = await loadError({ '.nixdockerrc.json': 'null\n' });
  assert.match(nul.message, '.nixdockerrc.json holds no settings object');
  assert.match(nul.format(), 'fix: write the settings as an object');
  const empty = await loadError({ '.nixdockerrc': '' });
  assert.match(empty.message, '.nixdockerrc holds no settings object');
  // package.json without a "nixdocker" key is simply no config.
  const dir = await tmpProject({ ...base, 'package.json': '{"name":"x"}' });
  assert.is((await loadConfig(dir, { env: {} })).config.configFile, null);
});

test('cacheDir outside the project is refused, also through a symlink; inside is fine', async () => {
  const up = await loadError({ '.nixdockerrc.json': '{"cacheDir":"../elsewhere"}' });
  assert.match(up.message, '"cacheDir"');
  assert.match(up.message, 'outside the project directory');
  const abs = await loadError({ '.nixdockerrc.json': '{"cacheDir":"/tmp/nixdocker-cache"}' });
  assert.match(abs.message, 'absolute path');
  const dir = await tmpProject({ ...base, '.nixdockerrc.json': '{"cacheDir":"cache/nd"}' });
  await symlink('/tmp', path.join(dir, 'cache'));
  try {
    await loadConfig(dir, { env: {} });
    assert.unreachable('a symlinked cacheDir outside the project loaded');
  } catch (err) {
    assert.match((err as Error).message, /"cacheDir".*resolves to \/tmp/);
  }
  const ok = await tmpProject({ ...base, '.nixdockerrc.json': '{"cacheDir":".cache/nixdocker"}' });
  const { config } = await loadConfig(ok, { env: {} });
  assert.is(config.cacheDir, path.join(config.projectDir, '.cache/nixdocker'));
});

test('userConfig entry that does not exist', async () => {
  const err = await loadError({ '.nixdockerrc.json': '{"userConfig":["workdir/missing.nix"]}' });
  assert.match(err.message, 'workdir/missing.nix');
  assert.match(err.message, 'does not exist');
  assert.match(err.message, 'userConfig[0]');
});

test('userConfig entries may not escape the project', async () => {
  const abs = await loadError({ '.nixdockerrc.json': '{"userConfig":["/etc/passwd"]}' });
  assert.match(abs.message, 'absolute path');
  const up = await loadError({ '.nixdockerrc.json': '{"userConfig":["../x.nix"]}' });
  assert.match(up.message, 'outside the project');

  const outside = await tmpProject({ 'x.nix': '[ ]' });
  const dir = await tmpProject({ ...base, '.nixdockerrc.json': '{"userConfig":["workdir/link.nix"]}' });
  await symlink(path.join(outside, 'x.nix'), path.join(dir, 'workdir/link.nix'));
  const err = await loadConfig(dir, { env: {} }).then(() => null, (e: Error) => e);
  assert.instance(err, UserError);
  assert.match(err!.message, 'symlink');
  assert.match(err!.message, 'outside the project');
});

test('a symlink inside the project is fine', async () => {
  const dir = await tmpProject({ ...base, 'nix/mine.nix': '[ ]', '.nixdockerrc.json': '{"userConfig":["workdir/link.nix"]}' });
  await symlink('../nix/mine.nix', path.join(dir, 'workdir/link.nix'));
  const { config } = await loadConfig(dir, { env: {} });
  assert.equal(config.userConfig, ['workdir/link.nix']);
});

test('missing envDir says how to create it', async () => {
  const dir = await tmpProject({ 'workdir/local.nix': '[ ]' });
  const err = await loadConfig(dir, { env: {} }).then(() => null, (e: UserError) => e);
  assert.instance(err, UserError);
  assert.match(err!.message, 'env');
  assert.match(err!.format(), 'nixdocker init');
});

test('DOCKER_REGISTRY_HOST overrides registry.host; DOCKER_REGISTRY_CONTAINER warns', async () => {
  const dir = await tmpProject({ ...base, '.nixdockerrc.json': '{"registry":{"host":"file.example"}}' });
  const { config, warnings } = await loadConfig(dir, { env: { DOCKER_REGISTRY_HOST: 'env.example:5001', DOCKER_REGISTRY_CONTAINER: 'r:5000' } });
  assert.is(config.registry.host, 'env.example:5001');
  assert.is(warnings.length, 1);
  assert.match(warnings[0]!, 'DOCKER_REGISTRY_CONTAINER');
});

test('binary cache and remote builder settings: valid ones load; a project\'s key files resolve inside it', async () => {
  const good = {
    builder: {
      substituters: ['http://127.0.0.1:8080', 'file://PROJECT/nix-cache'],
      trustedPublicKeys: ['team-1:bw7s8J22KFoRrjaJtUWFNSyFgpXZ3CUkYAGeE9nNFgk='],
      cache: { url: 's3://team-cache?region=eu-west-1', secretKeyFile: 'keys/cache.secret' },
      remoteBuilders: ['ssh://root@build1.example:2222 x86_64-linux - 4'],
      useSubstitutesOnRemote: true,
      sshKeyFile: 'keys/id_ed25519',
      sshKnownHostsFile: null,
    },
  };
  const dir = await tmpProject(base);
  const real = await realpath(dir);
  good.builder.substituters[1] = `file://${real}/nix-cache`;
  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify(good));
  const { config } = await loadConfig(dir, { env: {} });
  assert.is(config.builder.cache?.secretKeyFile, path.join(config.projectDir, 'keys/cache.secret'));
  assert.is(config.builder.sshKeyFile, path.join(config.projectDir, 'keys/id_ed25519'));
  assert.is(config.builder.sshKnownHostsFile, null);
  assert.equal(config.builder.substituters, good.builder.substituters);
  assert.equal(config.origins['builder.cache'], { file: '.nixdockerrc.json', trusted: false });
});

test('binary cache and remote builder settings: each mistake is named with the fix', async () => {
  const bad = {
    builder: {
      substituters: ['cache.example.org'],
      trustedPublicKeys: ['team-1:short='],
      cache: { url: 'ftp://x', secretKeyFile: 'k' },
      remoteBuilders: ['ssh://b x86_64-linux /root/.ssh/id 2'],
      useSubstitutesOnRemote: 'yes',
    },
  };
  const err = await loadError({ '.nixdockerrc.json': JSON.stringify(bad) });
  assert.match(err.message, '"builder.substituters" expected an array of store URLs');
  assert.match(err.message, '"builder.trustedPublicKeys" expected an array of public keys');
  assert.match(err.message, '"builder.cache" expected an object');
  assert.match(err.message, 'file://, http://, https:// or s3://');
  assert.match(err.message, '"builder.remoteBuilders"');
  assert.match(err.message, 'the SSH key comes from builder.sshKeyFile');
  assert.match(err.message, '"builder.useSubstitutesOnRemote" expected true or false');
  const noKey = await loadError({ '.nixdockerrc.json': JSON.stringify({ builder: { cache: { url: 'file:///tmp/c' } } }) });
  assert.match(noKey.message, 'secretKeyFile');
  // Credentials in a store URL would be logged and shown in status: refused, and the message does not repeat them.
  const creds = await loadError({
    '.nixdockerrc.json': JSON.stringify({ builder: { substituters: ['https://ci:s3cret@cache.example.org'], cache: { url: 'https://ci:s3cret@cache.example.org', secretKeyFile: 'k' } } }),
  });
  assert.match(creds.message, '"builder.substituters" expected an array of store URLs without spaces, without user:password@');
  assert.match(creds.message, '"builder.cache" expected an object');
  assert.match(creds.message, '"url" without user:password@');
  assert.not.match(creds.message, 's3cret');
  // An http(s) cache is a server that takes PUT: without a host there is none.
  for (const url of ['http:///cache', 'https://:8080/c']) {
    const noHost = await loadError({ '.nixdockerrc.json': JSON.stringify({ builder: { cache: { url, secretKeyFile: 'k' } } }) });
    assert.match(noHost.message, '"url" must name a server: http(s)://HOST[:PORT]/PATH');
  }
});

test('cache, substituter and builder settings leave the image tag alone', async () => {
  const { computeIdentity } = await import('../../src/identity.js');
  const plain = await tmpProject(base);
  const shared = await tmpProject({
    ...base,
    '.nixdockerrc.json': JSON.stringify({
      builder: {
        substituters: ['http://127.0.0.1:1'],
        trustedPublicKeys: ['team-1:bw7s8J22KFoRrjaJtUWFNSyFgpXZ3CUkYAGeE9nNFgk='],
        cache: { url: 's3://c', secretKeyFile: 'k' },
        remoteBuilders: ['ssh://b'],
        useSubstitutesOnRemote: true,
      },
    }),
  });
  const a = await computeIdentity((await loadConfig(plain, { env: {} })).config);
  const b = await computeIdentity((await loadConfig(shared, { env: {} })).config);
  assert.is(b.name, a.name);
  assert.is(b.tag, a.tag);
});

test('platforms: names and per-platform builders are normalised; each gets its own store volume', async () => {
  const dir = await tmpProject({
    ...base,
    '.nixdockerrc.json': JSON.stringify({
      builder: { image: 'b:1', volume: 'store' },
      platforms: ['linux/x86_64', { platform: 'linux/arm64/v8', dockerHost: 'ssh://arm-box' }, { platform: 'linux/arm/v7', image: 'b-arm:1', volume: 'v7store' }],
    }),
  });
  const { config } = await loadConfig(dir, { env: {} });
  assert.equal(config.platforms, [
    { name: 'linux/amd64', platform: { os: 'linux', architecture: 'amd64' }, image: 'b:1', volume: 'store-amd64' },
    { name: 'linux/arm64', platform: { os: 'linux', architecture: 'arm64' }, image: 'b:1', volume: 'store-arm64', dockerHost: 'ssh://arm-box' },
    { name: 'linux/arm/v7', platform: { os: 'linux', architecture: 'arm', variant: 'v7' }, image: 'b-arm:1', volume: 'v7store' },
  ]);
  const unset = await loadConfig(await tmpProject(base), { env: {} });
  assert.is(unset.config.platforms, null);
});

test('platforms: a bad name, a duplicate or an empty list names the key and the form expected', async () => {
  for (const [value, expected] of [
    [['linux/sparc'], /"linux\/sparc" is not a platform nixdocker builds \(known: linux\/amd64, linux\/arm64/],
    [['arm64'], /"arm64" is not of the form os\/arch/],
    [['linux/amd64', 'linux/x86_64'], /linux\/x86_64 is listed twice/],
    [[], /"platforms" expected a non-empty array/],
    [[{ platform: 'linux/arm64', volume: 'a b' }], /"volume" of linux\/arm64 must be a volume name/],
    [[{ platform: 'linux/arm64', engine: 'x' }], /unknown key "engine"/],
  ] as const) {
    const err = await loadError({ '.nixdockerrc.json': JSON.stringify({ platforms: value }) });
    assert.match(err.message, /Invalid nixdocker config in \.nixdockerrc\.json: "platforms"/);
    assert.match(err.message, expected);
  }
});

test('platforms: two platforms on one engine may not share a builder volume; on two engines they may', async () => {
  const err = await loadError({
    '.nixdockerrc.json': JSON.stringify({ platforms: [{ platform: 'linux/amd64', volume: 'nixstore' }, { platform: 'linux/arm64', volume: 'nixstore' }] }),
  });
  assert.match(err.message, /The platforms linux\/amd64 and linux\/arm64 in .*\.nixdockerrc\.json use the same builder volume nixstore\./);
  assert.match(err.hint ?? "", /give each platform its own "volume"/);
  const dir = await tmpProject({
    ...base,
    '.nixdockerrc.json': JSON.stringify({ platforms: [{ platform: 'linux/amd64', volume: 'nixstore' }, { platform: 'linux/arm64', volume: 'nixstore', dockerHost: 'ssh://arm-box' }] }),
  });
  const { config } = await loadConfig(dir, { env: {} });
  assert.equal(config.platforms?.map((t) => t.volume), ['nixstore', 'nixstore']);
});

test('the example config is valid and shows every default', async () => {
  const { readFile } = await import('node:fs/promises');
  const { REPO_ROOT } = await import('../helpers/project.js');
  const { DEFAULTS } = await import('../../src/config/defaults.js');
  const { SCHEMA } = await import('../../src/config/schema.js');
  const example = JSON.parse(await readFile(path.join(REPO_ROOT, 'nixdockerrc.example.json'), 'utf8'));
  const dir = await tmpProject({ ...base, '.nixdockerrc.json': JSON.stringify(example) });
  await mkdir(path.join(dir, 'workdir'), { recursive: true });
  await loadConfig(dir, { env: {} });
  for (const [k, v] of Object.entries(DEFAULTS)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      for (const [sub, sv] of Object.entries(v)) assert.equal(example[k][sub], sv, `${k}.${sub}`);
    } else {
      assert.equal(example[k], v, k);
    }
  }
  // Every schema key appears in the example, so users can see it.
  for (const key of Object.keys(SCHEMA)) {
    const [a, b] = key.split('.');
    assert.ok(b ? example[a!] && b in example[a!] : a! in example, `example lacks ${key}`);
  }
});

test('the README documents every key with its default and description', async () => {
  const { readFile } = await import('node:fs/promises');
  const { REPO_ROOT } = await import('../helpers/project.js');
  const { SCHEMA } = await import('../../src/config/schema.js');
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
  for (const [key, spec] of Object.entries(SCHEMA)) {
    const row = readme.split('\n').find((l) => l.startsWith(`| \`${key}\` |`));
    assert.ok(row, `README lacks ${key}`);
    assert.ok(row!.endsWith(`| ${spec.doc} |`), `README row of ${key} differs from the schema doc`);
  }
});

test.run();
