import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { chmod, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { UserError } from '../../src/errors.js';
import { nixBuildSettings } from '../../src/pipeline/nix-settings.js';
import { builderTarget } from '../../src/builder/target.js';
import { cleanupProjects, tmpProject } from '../helpers/project.js';

const test = suite('remote builders and substituters: Nix options and builder setup');
test.after(cleanupProjects);

async function configWith(builder: Record<string, unknown>, files: Record<string, string> = {}) {
  const dir = await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', '.nixdockerrc.json': JSON.stringify({ builder }), ...files });
  return { dir, config: (await loadConfig(dir, { env: {} })).config };
}

test('a builder with a port gets an ssh_config alias; key and known_hosts are mounted read-only', async () => {
  const { dir, config } = await configWith(
    { remoteBuilders: ['ssh://root@10.0.0.5:2222 x86_64-linux - 4 1 big-parallel'], sshKeyFile: 'id', sshKnownHostsFile: 'known_hosts', useSubstitutesOnRemote: true },
    { id: 'not a real key', known_hosts: '[10.0.0.5]:2222 ssh-ed25519 AAAA\n' },
  );
  await chmod(path.join(dir, 'id'), 0o600);
  const s = nixBuildSettings(config);
  const opt = (name: string) => s.args[s.args.indexOf(name) + 1];
  assert.is(opt('builders'), 'ssh://root@nixdocker-builder-1 x86_64-linux - 4 1 big-parallel');
  assert.is(opt('builders-use-substitutes'), 'true');
  const sshConfig = s.files[0]!.bytes.toString();
  assert.match(sshConfig, 'Host nixdocker-builder-1\n  HostName 10.0.0.5\n  Port 2222');
  assert.match(sshConfig, 'IdentityFile /run/nixdocker/ssh/key');
  assert.match(sshConfig, 'UserKnownHostsFile /run/nixdocker/ssh/known_hosts');
  assert.not.match(sshConfig, 'not a real key');
  assert.equal(s.env('/nixdocker/1'), { NIX_SSHOPTS: '-F /nixdocker/1/ssh/config' });
  assert.equal(s.remoteNames, { 'ssh://root@nixdocker-builder-1': 'ssh://root@10.0.0.5:2222' });
  const target = builderTarget(config);
  assert.is(target.networkMode, 'host');
  assert.equal(
    target.mounts!.map((m) => [m.Source, m.Target, m.ReadOnly]),
    [
      [path.join(config.projectDir, 'id'), '/run/nixdocker/ssh/key', true],
      [path.join(config.projectDir, 'known_hosts'), '/run/nixdocker/ssh/known_hosts', true],
    ],
  );
});

test('a key others can read, or no known hosts, is a UserError naming the setting', async () => {
  const { dir, config } = await configWith({ remoteBuilders: ['ssh://b'], sshKeyFile: 'id', sshKnownHostsFile: 'kh' }, { id: 'k', kh: '' });
  await chmod(path.join(dir, 'id'), 0o644);
  try {
    nixBuildSettings(config);
    assert.unreachable('expected a UserError');
  } catch (err) {
    assert.instance(err, UserError);
    assert.match((err as UserError).message, 'builder.sshKeyFile');
    assert.match((err as UserError).format(), 'chmod 600');
  }
  const noHosts = await configWith({ remoteBuilders: ['ssh://b'] });
  assert.throws(() => nixBuildSettings(noHosts.config), /set builder.sshKnownHostsFile/);
});

test('substituters and keys become --option arguments; none configured changes nothing', async () => {
  const { config } = await configWith({
    substituters: ['http://127.0.0.1:8080', 'https://cache.example'],
    trustedPublicKeys: ['team-1:bw7s8J22KFoRrjaJtUWFNSyFgpXZ3CUkYAGeE9nNFgk='],
  });
  assert.equal(nixBuildSettings(config).args, [
    '--option', 'substituters', 'http://127.0.0.1:8080 https://cache.example',
    '--option', 'trusted-public-keys', 'team-1:bw7s8J22KFoRrjaJtUWFNSyFgpXZ3CUkYAGeE9nNFgk=',
  ]);
  const plain = await configWith({});
  assert.equal(nixBuildSettings(plain.config).args, []);
  assert.is(builderTarget(plain.config).networkMode, undefined);
});

test('a project path swapped for a symlink out of the project after load is refused at mount time, never mounted', async () => {
  const outside = await realpath(await tmpProject({ 'cache/.keep': '', id: 'k' }, 'nixdocker-outside-'));
  const dir = await realpath(await tmpProject({ 'env/default.nix': '[ ]', 'workdir/local.nix': '[ ]', 'subst/.keep': '', 'keys/id': 'k', kh: 'h' }));
  await chmod(path.join(dir, 'keys/id'), 0o600);
  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify({ builder: { substituters: [`file://${dir}/subst`] } }));
  const { config } = await loadConfig(dir, { env: {} });
  assert.equal(builderTarget(config).mounts!.map((m) => m.Source), [`${dir}/subst`]);
  await rm(path.join(dir, 'subst'), { recursive: true });
  await symlink(path.join(outside, 'cache'), path.join(dir, 'subst'));
  assert.throws(() => builderTarget(config), (e: Error) => e instanceof UserError && e.message.includes(`names ${dir}/subst, which resolves (through a symlink) to ${outside}/cache`));

  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify({ builder: { remoteBuilders: ['ssh://b'], sshKeyFile: 'keys/id', sshKnownHostsFile: 'kh' } }));
  const ssh = (await loadConfig(dir, { env: {} })).config;
  assert.is(builderTarget(ssh).mounts![0]!.Source, `${dir}/keys/id`);
  await rm(path.join(dir, 'keys'), { recursive: true });
  await chmod(path.join(outside, 'id'), 0o600);
  await symlink(outside, path.join(dir, 'keys'));
  assert.throws(() => builderTarget(ssh), /"builder\.sshKeyFile" in \.nixdockerrc\.json names .*keys\/id, which resolves \(through a symlink\)/);
});

test.run();
