import type { Config } from './types.js';

export const DEFAULT_BUILDER_IMAGE = 'docker.io/nixos/nix:2.24.9';

/** Defaults for every key; nixdockerrc.example.json shows the same values. */
export const DEFAULTS: Omit<Config, 'projectDir' | 'configFile' | 'userConfigFile' | 'origins' | 'cacheDir'> & { cacheDir: string } = {
  envDir: 'env',
  userConfig: ['workdir/local.nix'],
  workdir: 'workdir',
  registry: { host: 'localhost:5000', namespace: 'nixdocker', insecure: false },
  builder: {
    image: DEFAULT_BUILDER_IMAGE,
    volume: 'nixdocker-store',
    mode: 'container',
    substituters: [],
    trustedPublicKeys: [],
    cache: null,
    remoteBuilders: [],
    useSubstitutesOnRemote: false,
    sshKeyFile: null,
    sshKnownHostsFile: null,
    idleSeconds: 60,
  },
  image: { maxLayers: 100 },
  platforms: null,
  cache: { keepResults: 20 },
  watch: { debounceMs: 300, cancelSuperseded: true },
  plugins: ['push'],
  cacheDir: '.nixdocker',
};
