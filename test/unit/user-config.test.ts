import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { cleanupProjects, tmpProject } from '../helpers/project.js';

const test = suite('user config and the trust rule');
test.after(cleanupProjects);

const base = { 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]' };
const KEY = 'team-1:bw7s8J22KFoRrjaJtUWFNSyFgpXZ3CUkYAGeE9nNFgk=';

/** A home directory with keys in it, and a user config there (object or raw text). */
async function home(user?: unknown): Promise<{ home: string; file: string; env: NodeJS.ProcessEnv }> {
  const dir = await realpath(await tmpProject({ '.ssh/id': 'k', '.ssh/known_hosts': 'h', '.config/nix/secret.key': 's' }, 'nixdocker-home-'));
  const file = path.join(dir, '.config/nixdocker/config.json');
  if (user !== undefined) {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, typeof user === 'string' ? user : JSON.stringify(user));
  }
  return { home: dir, file, env: { HOME: dir } };
}

async function project(rc?: unknown, files: Record<string, string> = {}): Promise<string> {
  return realpath(await tmpProject({ ...base, ...(rc === undefined ? {} : { '.nixdockerrc.json': JSON.stringify(rc) }), ...files }));
}

async function loadError(dir: string, env: NodeJS.ProcessEnv): Promise<UserError> {
  const err = await loadConfig(dir, { env }).then(() => null, (e: unknown) => e);
  assert.instance(err, UserError, 'expected a UserError');
  return err as UserError;
}

test('found at ~/.config/nixdocker/config.json, $XDG_CONFIG_HOME/nixdocker/config.json or $NIXDOCKER_USER_CONFIG; none is fine', async () => {
  const dir = await project();
  const h = await home({ builder: { image: 'from-home:1' } });
  assert.is((await loadConfig(dir, { env: h.env })).config.builder.image, 'from-home:1');
  assert.is((await loadConfig(dir, { env: h.env })).config.userConfigFile, h.file);

  const xdg = await tmpProject({ 'nixdocker/config.json': JSON.stringify({ builder: { image: 'from-xdg:1' } }) }, 'nixdocker-xdg-');
  assert.is((await loadConfig(dir, { env: { ...h.env, XDG_CONFIG_HOME: xdg } })).config.builder.image, 'from-xdg:1');

  const explicit = await tmpProject({ 'mine.json': JSON.stringify({ builder: { image: 'from-var:1' } }) }, 'nixdocker-var-');
  const withVar = await loadConfig(dir, { env: { ...h.env, XDG_CONFIG_HOME: xdg, NIXDOCKER_USER_CONFIG: path.join(explicit, 'mine.json') } });
  assert.is(withVar.config.builder.image, 'from-var:1');

  const none = await home();
  const { config } = await loadConfig(dir, { env: none.env });
  assert.is(config.builder.image, 'docker.io/nixos/nix:2.24.9');
  assert.is(config.userConfigFile, none.file);
});

test('merge order: defaults < user config < project config < environment', async () => {
  const h = await home({ registry: { host: 'user.example:1', namespace: 'mine' }, builder: { image: 'u:1', volume: 'user-store', idleSeconds: 30, substituters: ['https://u.example'], trustedPublicKeys: [KEY] } });
  const dir = await project({ registry: { host: 'project.example:2' }, builder: { volume: 'project-store', substituters: [] } });
  const { config } = await loadConfig(dir, { env: h.env });
  assert.is(config.registry.host, 'project.example:2');
  assert.is(config.registry.namespace, 'mine');
  assert.is(config.registry.insecure, false);
  assert.is(config.builder.image, 'u:1');
  assert.is(config.builder.volume, 'project-store');
  assert.is(config.builder.idleSeconds, 30);
  assert.equal(config.builder.substituters, [], 'a list is replaced whole, not joined');
  assert.equal(config.builder.trustedPublicKeys, [KEY]);
  const withEnv = await loadConfig(dir, { env: { ...h.env, DOCKER_REGISTRY_HOST: 'env.example:3' } });
  assert.is(withEnv.config.registry.host, 'env.example:3');
});

test('a malformed user config names the file with line and column, never its text', async () => {
  const h = await home('{\n  "builder": { "sshKeyFile": "/home/me/.ssh/secret-name" }\n  "registry": {}\n}\n');
  const err = await loadError(await project(), h.env);
  assert.match(err.message, `your nixdocker user config ${h.file}`);
  assert.match(err.message, /line 3, column 3/);
  assert.not.match(err.message, 'secret-name');
  assert.match(err.format(), 'fix: fix the syntax of that file');
});

test('a user config with project settings, a wrong value or no object is refused in one paragraph naming the file and the fix', async () => {
  const keys = await home({ envDir: 'env', plugins: [], builder: { image: 'x:1' } });
  const err = await loadError(await project(), keys.env);
  assert.match(err.message, `Your nixdocker user config ${keys.file} sets "envDir", "plugins", which describe one project`);
  assert.match(err.format(), `fix: move "envDir", "plugins" to the project's .nixdockerrc.json`);
  assert.not.match(err.format(), '\n\n');

  const typo = await home({ builder: { idleSeconds: 1, imgae: 'x' } });
  const bad = await loadError(await project(), typo.env);
  assert.match(bad.message, `Invalid settings in your nixdocker user config ${typo.file}`);
  assert.match(bad.message, '"builder.idleSeconds" expected an integer from 2 to 86400');
  assert.match(bad.message, '"builder.imgae" is not a known setting (did you mean "builder.image"?)');

  const nul = await home('null');
  assert.match((await loadError(await project(), nul.env)).message, 'holds no settings object');

  const missing = await loadError(await project(), { NIXDOCKER_USER_CONFIG: '/nonexistent/nixdocker.json' });
  assert.match(missing.message, 'Cannot read your nixdocker user config /nonexistent/nixdocker.json (NIXDOCKER_USER_CONFIG): it does not exist');
});

test('the trust rule: a project config naming a host path outside the project is refused, naming the setting, the file and the fix', async () => {
  const h = await home();
  const outside = await realpath(await tmpProject({ 'id': 'k', 'cache/.keep': '' }, 'nixdocker-outside-'));
  const cases: [Record<string, unknown>, string, RegExp | string][] = [
    [{ sshKeyFile: '/etc/ssh/ssh_host_ed25519_key' }, 'builder.sshKeyFile', 'names /etc/ssh/ssh_host_ed25519_key, outside the project directory'],
    [{ sshKnownHostsFile: '~/.ssh/known_hosts' }, 'builder.sshKnownHostsFile', 'names ~/.ssh/known_hosts, a path in your home directory, outside'],
    [{ sshKeyFile: '../id' }, 'builder.sshKeyFile', 'names ../id, outside'],
    [{ cache: { url: 'https://attacker.example', secretKeyFile: '~/.config/nix/secret.key' } }, 'builder.cache', 'names ~/.config/nix/secret.key'],
    [{ cache: { url: 'file:///root/.ssh', secretKeyFile: 'keys/k' } }, 'builder.cache', 'names /root/.ssh, outside'],
    [{ substituters: ['https://ok.example', `file://${outside}/cache`] }, 'builder.substituters', `names ${outside}/cache, outside`],
  ];
  for (const [builder, setting, why] of cases) {
    const err = await loadError(await project({ builder }), h.env);
    assert.match(err.message, `The setting "${setting}" in .nixdockerrc.json ${typeof why === 'string' ? why : ''}`, JSON.stringify(builder));
    assert.match(err.message, "A project's config may name host paths only inside the project");
    assert.match(err.format(), `fix: move "${setting}" to your user config ${h.file} (yours, not the project's), or point it inside the project`);
  }
  // ~ is not expanded in a project config: not even into a path that happens to exist.
  const tilde = await loadError(await project({ builder: { sshKeyFile: '~/.ssh/id' } }), h.env);
  assert.not.match(tilde.message, h.home);
});

test('the trust rule: a symlink inside the project that points out of it is refused; one that stays inside is fine', async () => {
  const h = await home();
  const outside = await realpath(await tmpProject({ 'id': 'k', 'cache/.keep': '' }, 'nixdocker-outside-'));
  const dir = await project({ builder: { sshKeyFile: 'keys/id', remoteBuilders: ['ssh://b'], sshKnownHostsFile: 'kh' } }, { kh: '' });
  await symlink(outside, path.join(dir, 'keys'));
  const err = await loadError(dir, h.env);
  assert.match(err.message, `The setting "builder.sshKeyFile" in .nixdockerrc.json names keys/id, which resolves (through a symlink) to ${outside}/id, outside the project directory`);

  const cache = await project();
  await symlink(path.join(outside, 'cache'), path.join(cache, 'cache'));
  await writeFile(path.join(cache, '.nixdockerrc.json'), JSON.stringify({ builder: { cache: { url: `file://${cache}/cache`, secretKeyFile: 'k' } } }));
  assert.match((await loadError(cache, h.env)).message, `names ${cache}/cache, which resolves (through a symlink) to ${outside}/cache`);

  // A dangling symlink could later be made to point anywhere: refused too.
  const dangling = await project({ builder: { cache: { url: 's3://c', secretKeyFile: 'key' } } });
  await symlink('/nonexistent/secret.key', path.join(dangling, 'key'));
  assert.match((await loadError(dangling, h.env)).message, 'names key, a symlink to a path that does not exist');

  const inside = await project(undefined, { 'keys/id': 'k' });
  await writeFile(path.join(inside, '.nixdockerrc.json'), JSON.stringify({ builder: { sshKeyFile: 'link', cache: { url: `file://${inside}/c`, secretKeyFile: 'keys/k' } } }));
  await symlink('keys/id', path.join(inside, 'link'));
  const { config } = await loadConfig(inside, { env: h.env });
  assert.is(config.builder.sshKeyFile, path.join(inside, 'keys/id'));
  assert.is(config.builder.cache?.secretKeyFile, path.join(inside, 'keys/k'));
});

test('the same host paths from the user config are accepted: ~/ expanded, relative to the file', async () => {
  const h = await home({
    builder: {
      sshKeyFile: '~/.ssh/id',
      sshKnownHostsFile: '../../.ssh/known_hosts',
      cache: { url: 'file:///srv/team-cache', secretKeyFile: '~/.config/nix/secret.key' },
      substituters: ['file:///srv/team-cache'],
    },
  });
  const dir = await project();
  const { config } = await loadConfig(dir, { env: h.env });
  assert.is(config.builder.sshKeyFile, path.join(h.home, '.ssh/id'));
  assert.is(config.builder.sshKnownHostsFile, path.join(h.home, '.ssh/known_hosts'));
  assert.equal(config.builder.cache, { url: 'file:///srv/team-cache', secretKeyFile: path.join(h.home, '.config/nix/secret.key') });
  assert.equal(config.origins['builder.cache'], { file: h.file, trusted: true });
  assert.equal(config.origins['builder.sshKeyFile'], { file: h.file, trusted: true });
  assert.is(config.origins['builder.mode'], undefined);
});

test('builder.cache is taken whole from one file: a project cannot pair its URL with the user\'s key', async () => {
  const h = await home({ builder: { cache: { url: 'file:///srv/team-cache', secretKeyFile: '~/.config/nix/secret.key' } } });
  // The user's key by its path, behind the project's URL: the path is outside the project, so refused.
  const oracle = await loadError(await project({ builder: { cache: { url: 'https://attacker.example', secretKeyFile: path.join(h.home, '.config/nix/secret.key') } } }), h.env);
  assert.match(oracle.message, 'The setting "builder.cache" in .nixdockerrc.json');
  // A URL alone is not a cache setting: the user's key is never filled in behind it.
  const urlOnly = await loadError(await project({ builder: { cache: { url: 'https://attacker.example' } } }), h.env);
  assert.match(urlOnly.message, '"builder.cache" expected an object');
  assert.match(urlOnly.message, 'secretKeyFile');
  // The project's own cache with its own key: the project's, whole; the user's key is not used.
  const own = await project({ builder: { cache: { url: 'https://project-cache.example', secretKeyFile: 'keys/project.secret' } } });
  const { config } = await loadConfig(own, { env: h.env });
  assert.equal(config.builder.cache, { url: 'https://project-cache.example', secretKeyFile: path.join(own, 'keys/project.secret') });
  assert.equal(config.origins['builder.cache'], { file: '.nixdockerrc.json', trusted: false });
});

test('a project\'s platforms may not send the user\'s signing key to an engine the project picks', async () => {
  const h = await home({ builder: { cache: { url: 'https://team.example', secretKeyFile: '~/.config/nix/secret.key' } } });
  const rc = { platforms: ['linux/amd64', { platform: 'linux/arm64', dockerHost: 'tcp://build.example:2375' }] };
  const err = await loadError(await project(rc), h.env);
  assert.match(err.message, '"platforms" in .nixdockerrc.json builds linux/arm64 on the engine tcp://build.example:2375, and your signing key (builder.cache in');
  assert.match(err.format(), 'remove "dockerHost" from that entry');
  // Without the user's key, or with the project's own cache, the project picks its engines.
  assert.ok((await loadConfig(await project(rc), { env: (await home()).env })).config.platforms![1]!.dockerHost);
  const own = await project({ ...rc, builder: { cache: { url: 'https://p.example', secretKeyFile: 'k' } } });
  assert.ok((await loadConfig(own, { env: h.env })).config.platforms![1]!.dockerHost);
});

test('builder.mode "local" (Nix on the host) comes only from the user config', async () => {
  const h = await home();
  const err = await loadError(await project({ builder: { mode: 'local' } }), h.env);
  assert.match(err.message, '"builder.mode": "local" in .nixdockerrc.json would run the project\'s Nix code on this host as you');
  assert.match(err.format(), `set "builder": { "mode": "local" } in your user config ${h.file}`);
  const u = await home({ builder: { mode: 'local' } });
  assert.is((await loadConfig(await project(), { env: u.env })).config.builder.mode, 'local');
  // A project may still ask for the container, which reaches less.
  assert.is((await loadConfig(await project({ builder: { mode: 'container' } }), { env: u.env })).config.builder.mode, 'container');
});

test('a prototype project (config.json only) takes its builder from the user config', async () => {
  const h = await home({ builder: { image: 'u:1', volume: 'v' }, registry: { host: 'user.example:1' } });
  const dir = await project(undefined, { 'config.json': JSON.stringify({ userConfig: ['workdir/local.nix'], DOCKER_REGISTRY_HOST: 'proto.example:5000' }) });
  const { config, warnings } = await loadConfig(dir, { env: h.env });
  assert.is(config.builder.image, 'u:1');
  assert.is(config.registry.host, 'proto.example:5000');
  assert.match(warnings[0]!, "Using the prototype's config.json");
});

test('the README\'s user config example is a valid user config', async () => {
  const { readFile } = await import('node:fs/promises');
  const { REPO_ROOT } = await import('../helpers/project.js');
  const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Your user config'));
  const example = /```json\n([\s\S]*?)```/.exec(section)![1]!;
  const h = await home(example);
  const { config } = await loadConfig(await project(), { env: h.env });
  assert.is(config.builder.sshKeyFile, path.join(h.home, '.ssh/nix-builder'));
  assert.is(config.origins['builder.cache']?.trusted, true);
});

test.run();
