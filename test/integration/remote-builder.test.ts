import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import Docker from 'dockerode';
import { execa } from 'execa';
import { readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { cleanupProjects, runCli, userConfigFile } from '../helpers/project.js';
import { inVolume, leftoverContainers, offlineProject, removeVolume, requireParts, SSH_BUILDER_IMAGE as SSH_IMAGE } from '../helpers/services.js';
import { cleanupDirs, freePort, tmpDir, waitUntil } from '../helpers/registry.js';

const test = suite('remote builder (real nix over ssh)');
const VOLUME = `nixdocker-test-remote-${process.pid}`;
const env = { DOCKER_HOST: process.env.DOCKER_HOST };

interface BuildJson {
  reference: string;
  nix: { built: number; fetched: number; remote: number };
  result: { built: string[]; builtRemotely: string[]; user: { name: string; outPath: string }[] };
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });

const ready = await requireParts(test, ['engine', 'registry', 'nix', 'ssh-builder']);

if (ready) {
  const docker = new Docker();
  let remote: Docker.Container;
  let port: number;
  let keys: string;
  let privateKey: string;

  test.before(async () => {
    keys = await tmpDir('nixdocker-ssh-');
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'nixdocker-test', '-f', path.join(keys, 'id')]);
    privateKey = await readFile(path.join(keys, 'id'), 'utf8');
    port = await freePort();
    // sshd on a loopback port of the host network; the builder container reaches it over the same network.
    remote = await docker.createContainer({
      Image: SSH_IMAGE,
      name: `nixdocker-test-sshd-${process.pid}`,
      Cmd: ['sh', '-c', `mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -p ${port} -o ListenAddress=127.0.0.1 -o PermitRootLogin=prohibit-password`],
      HostConfig: {
        NetworkMode: 'host',
        Mounts: [{ Type: 'bind', Source: path.join(keys, 'id.pub'), Target: '/root/.ssh/authorized_keys', ReadOnly: true }],
      },
    });
    await remote.start();
    await waitUntil(`sshd on 127.0.0.1:${port}`, () => listening(port), 30_000);
    const hostKey = await execIn(remote, ['cat', '/etc/ssh/ssh_host_ed25519_key.pub']);
    await writeFile(path.join(keys, 'known_hosts'), `[127.0.0.1]:${port} ${hostKey.split(' ').slice(0, 2).join(' ')}\n`);
  });

  test.after(async () => {
    await remote?.remove({ force: true }).catch(() => {});
    await removeVolume(VOLUME);
    await cleanupProjects();
    await cleanupDirs();
  });

  const builders = (builderPort: number) => [`ssh://root@127.0.0.1:${builderPort} ${process.arch === 'arm64' ? 'aarch64-linux' : 'x86_64-linux'} - 2`];
  /** The builders in the project's config; the key and known_hosts, outside the project, in the user config. */
  const project = async (builderPort: number, nonce: string) => {
    const dir = await offlineProject({
      volume: VOLUME,
      image: SSH_IMAGE,
      config: { builder: { remoteBuilders: builders(builderPort) } },
      files: { 'workdir/local.nix': `{ pkgs, ... }: [ (pkgs.writeScriptBin "remote-${nonce}" "echo built remotely ${nonce}") ]\n` },
    });
    const user = await userConfigFile({ builder: { sshKeyFile: path.join(keys, 'id'), sshKnownHostsFile: path.join(keys, 'known_hosts') } });
    return { dir, env: { ...env, NIXDOCKER_USER_CONFIG: user } };
  };

  test('a build sent to the remote builder over SSH lands in the local store, and the image runs it', async () => {
    const nonce = `${process.pid}${Date.now()}`;
    const { dir, env } = await project(port, nonce);
    const create = await runCli(['-C', dir, 'builder', 'create'], { env });
    assert.is(create.exitCode, 0, create.stderr);
    const r = await runCli(['-C', dir, '--log-level', 'debug', 'build', '--load', '--json'], { env, timeoutMs: 240_000 });
    assert.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as BuildJson;
    assert.ok(out.nix.built > 0);
    assert.is(out.nix.remote, out.nix.built, 'every derivation went to the remote builder');
    assert.is(out.nix.fetched, 0, 'outputs copied back from the builder are not fetches');
    assert.ok(out.result.builtRemotely.some((d) => d.endsWith(`-remote-${nonce}.drv`)));
    const outPath = out.result.user[0]!.outPath;
    // Built over there, copied here.
    assert.is((await execIn(remote, ['sh', '-c', `test -x ${outPath}/bin/remote-${nonce} && echo yes`])).trim(), 'yes');
    const local = await inVolume(VOLUME, ['ls', outPath]);
    assert.is(local.exitCode, 0, local.output);
    const run = await execa('podman', ['run', '--rm', out.reference, `remote-${nonce}`], { reject: false });
    assert.is(run.stdout.trim(), `built remotely ${nonce}`, run.stderr);
    // The key reached ssh through a read-only mount; its content shows nowhere in the debug log.
    assert.not.ok(r.stderr.includes(privateKey.split('\n')[1]!), 'the SSH key is in the log');
  });

  test('a remote builder that is down: Nix builds locally, with a warning naming the builder', async () => {
    const nonce = `${process.pid}${Date.now()}down`;
    const down = await freePort();
    const { dir, env } = await project(down, nonce);
    const r = await runCli(['-C', dir, 'build', '--load', '--json'], { env, timeoutMs: 240_000 });
    assert.is(r.exitCode, 0, r.stderr);
    const out = JSON.parse(r.stdout) as BuildJson;
    assert.is(out.nix.remote, 0);
    assert.ok(out.result.built.some((d) => d.endsWith(`-remote-${nonce}.drv`)));
    assert.match(r.stderr, `remote builder ssh://root@127.0.0.1:${down} could not be used`);
    assert.match(r.stderr, 'Nix built locally instead');
  });

  test('a project config naming an SSH key outside the project is refused before any container starts', async () => {
    const volume = `${VOLUME}-refused`;
    const dir = await offlineProject({
      volume,
      image: SSH_IMAGE,
      config: { builder: { remoteBuilders: builders(port), sshKeyFile: path.join(keys, 'id'), sshKnownHostsFile: path.join(keys, 'known_hosts') } },
    });
    for (const cmd of [['builder', 'create'], ['build', '--load']]) {
      const r = await runCli(['-C', dir, ...cmd], { env });
      assert.is(r.exitCode, 1, r.stderr);
      assert.match(r.stderr, `The setting "builder.sshKeyFile" in .nixdockerrc.json names ${path.join(keys, 'id')}, outside the project directory`);
      assert.match(r.stderr, 'fix: move "builder.sshKeyFile" to your user config');
      assert.not.ok(r.stderr.includes(privateKey.split('\n')[1]!), 'the SSH key is in the output');
    }
    assert.equal(await leftoverContainers(volume), []);
    assert.ok(await docker.getVolume(volume).inspect().then(() => false, () => true), 'no store volume was made');
  });
}

/** Runs a command in a running container and returns its stdout (demultiplexed). */
async function execIn(container: Docker.Container, cmd: string[]): Promise<string> {
  const exec = await container.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: false });
  const { PassThrough } = await import('node:stream');
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (c: Buffer) => chunks.push(c));
  new Docker().modem.demuxStream(stream, out, new PassThrough());
  await new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('close', resolve);
    stream.on('error', reject);
  });
  return Buffer.concat(chunks).toString();
}

test.run();
