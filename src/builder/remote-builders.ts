import { statSync } from 'node:fs';
import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { hostPathNow } from '../config/trust.js';
import type { Config, TrustedSetting } from '../config/types.js';
import type { StagedFile } from './staging.js';

/** Where the SSH key and known_hosts appear in the builder container (read-only bind mounts). */
export const SSH_DIR = '/run/nixdocker/ssh';
/** The ssh_config nixdocker writes, inside the staging root. */
const CONFIG_PATH = 'ssh/config';

export interface RemoteBuilderSetup {
  /** The `builders` setting, hosts replaced by the aliases of the ssh_config. */
  builders: string;
  /** Goes into the staging root: not secret (it names the key file, it does not hold it). */
  files: StagedFile[];
  /** Environment for nix-store, given the staging root as Nix sees it. */
  env(root: string): Record<string, string>;
  /** Each builder's URI as Nix names it (with the alias) → as configured, for messages. */
  names: Record<string, string>;
}

/**
 * Nix 2.8 hands an ssh:// builder's host straight to ssh, so a port in the
 * URL does not work; and the key must come from outside the image. So every
 * builder gets an alias in an ssh_config of our own (HostName, Port), and the
 * key and known_hosts are the configured files: mounted read-only in container
 * mode, used in place in local mode. NIX_SSHOPTS points ssh at that config.
 */
export function remoteBuilderSetup(config: Config, inContainer: boolean): RemoteBuilderSetup | null {
  const b = config.builder;
  if (b.remoteBuilders.length === 0) return null;
  const files = sshFiles(config);
  const keyPath = files.key ? (inContainer ? `${SSH_DIR}/key` : files.key) : null;
  const knownPath = files.knownHosts ? (inContainer ? `${SSH_DIR}/known_hosts` : files.knownHosts) : null;
  const hosts: string[] = [];
  const names: Record<string, string> = {};
  const lines = b.remoteBuilders.map((line, i) => {
    const fields = line.trim().split(/\s+/);
    const m = /^(ssh(?:-ng)?):\/\/(?:([^@\s]+)@)?(\[[^\]]+\]|[^:\s]+)(?::(\d+))?$/.exec(fields[0]!);
    if (!m) {
      throw new UserError(`builder.remoteBuilders[${i}] does not start with ssh://[USER@]HOST[:PORT]: ${JSON.stringify(line)}.`, 'write each builder as "ssh://USER@HOST[:PORT] SYSTEMS - MAXJOBS"');
    }
    const [, scheme, user, host, port] = m;
    const alias = `nixdocker-builder-${i + 1}`;
    hosts.push(`Host ${alias}`, `  HostName ${host!.replace(/^\[|\]$/g, '')}`, ...(port ? [`  Port ${port}`] : []), '');
    const uri = `${scheme}://${user ? `${user}@` : ''}${alias}`;
    names[uri] = fields[0]!;
    return [uri, ...fields.slice(1)].join(' ');
  });
  const common = [
    'Host *',
    ...(keyPath ? [`  IdentityFile ${keyPath}`, '  IdentitiesOnly yes'] : []),
    ...(knownPath ? [`  UserKnownHostsFile ${knownPath}`] : []),
    '  StrictHostKeyChecking yes',
    '  BatchMode yes',
    // A builder that is down must cost seconds, not a TCP timeout, before Nix builds locally.
    '  ConnectTimeout 5',
    '  ServerAliveInterval 15',
    '',
  ];
  return {
    builders: lines.join(' ; '),
    files: [{ path: CONFIG_PATH, bytes: Buffer.from([...hosts, ...common].join('\n')) }],
    env: (root) => ({ NIX_SSHOPTS: `-F ${root}/${CONFIG_PATH}` }),
    names,
  };
}

/** The read-only mounts of the SSH files for a builder container. */
export function sshMounts(config: Config): Docker.MountSettings[] {
  if (config.builder.remoteBuilders.length === 0) return [];
  const files = sshFiles(config);
  const mounts: Docker.MountSettings[] = [];
  // A project's own files are checked again now: the engine mounts whatever a symlink says at this moment.
  if (files.key) mounts.push({ Type: 'bind', Source: hostPathNow(config, 'builder.sshKeyFile', files.key), Target: `${SSH_DIR}/key`, ReadOnly: true });
  if (files.knownHosts) {
    mounts.push({ Type: 'bind', Source: hostPathNow(config, 'builder.sshKnownHostsFile', files.knownHosts), Target: `${SSH_DIR}/known_hosts`, ReadOnly: true });
  }
  return mounts;
}

/** Checks the configured SSH files without reading them; messages name the setting, never the content. */
function sshFiles(config: Config): { key: string | null; knownHosts: string | null } {
  const { sshKeyFile, sshKnownHostsFile, remoteBuilders } = config.builder;
  const where = (setting: TrustedSetting) => config.origins[setting]?.file ?? 'the config';
  if (sshKeyFile) {
    const st = statOrNull(sshKeyFile);
    if (!st?.isFile()) throw new UserError(`builder.sshKeyFile in ${where('builder.sshKeyFile')} names ${sshKeyFile}, which is not a file.`, 'point builder.sshKeyFile at the private key the remote builders accept');
    // ssh refuses a private key others can read; say so before Nix hides it behind "cannot build on".
    if ((st.mode & 0o077) !== 0) throw new UserError(`The SSH key ${sshKeyFile} (builder.sshKeyFile) can be read by other users, and ssh refuses such keys.`, `run \`chmod 600 ${sshKeyFile}\``);
  }
  if (sshKnownHostsFile) {
    if (!statOrNull(sshKnownHostsFile)?.isFile()) throw new UserError(`builder.sshKnownHostsFile in ${where('builder.sshKnownHostsFile')} names ${sshKnownHostsFile}, which is not a file.`, 'write the builders\' host keys there, e.g. `ssh-keyscan -p PORT HOST > FILE`');
  } else if (remoteBuilders.some((l) => (l.trim().split(/\s+/)[7] ?? '-') === '-')) {
    throw new UserError(
      `builder.remoteBuilders lists builders but no host keys are known for them: set builder.sshKnownHostsFile.`,
      'write the builders\' host keys into a file (e.g. `ssh-keyscan -p PORT HOST > FILE`, then check them) and set builder.sshKnownHostsFile to it',
    );
  }
  return { key: sshKeyFile, knownHosts: sshKnownHostsFile };
}

function statOrNull(p: string) {
  try {
    return statSync(p);
  } catch {
    return null;
  }
}
