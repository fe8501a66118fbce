import type { Config } from '../config/types.js';
import { remoteBuilderSetup } from '../builder/remote-builders.js';
import type { StagedFile } from '../builder/staging.js';

/** How a build reaches other machines: Nix options, environment and files to stage. */
export interface NixBuildSettings {
  /** `--option NAME VALUE` arguments for nix-store --realise. */
  args: string[];
  /** Environment for nix-store, given the staging root as Nix sees it. */
  env(root: string): Record<string, string>;
  /** Extra files for the staging root (the ssh_config of the remote builders). */
  files: StagedFile[];
  /** Remote builders as Nix names them → as configured. */
  remoteNames: Record<string, string>;
}

/**
 * Substituters, keys and builders as command-line options. Nix 2.8 takes
 * `--option substituters` from root in single-user mode; the list replaces the
 * builder's nix.conf entry, so an empty setting leaves the image's own alone.
 * None of this reaches the identity: a fetched path is the same path.
 */
export function nixBuildSettings(config: Config): NixBuildSettings {
  const b = config.builder;
  const args: string[] = [];
  const option = (name: string, value: string) => args.push('--option', name, value);
  if (b.substituters.length > 0) option('substituters', b.substituters.join(' '));
  if (b.trustedPublicKeys.length > 0) option('trusted-public-keys', b.trustedPublicKeys.join(' '));
  const remote = remoteBuilderSetup(config, b.mode === 'container');
  if (remote) {
    option('builders', remote.builders);
    option('builders-use-substitutes', String(b.useSubstitutesOnRemote));
  }
  return { args, env: (root) => remote?.env(root) ?? {}, files: remote?.files ?? [], remoteNames: remote?.names ?? {} };
}
