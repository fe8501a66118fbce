/** One store path of a closure, as `nix path-info --json` reports it. */
export interface StorePathInfo {
  /** Absolute store path, /nix/store/HASH-NAME. */
  path: string;
  /** Size of the path's NAR serialisation in bytes. */
  narSize: number;
  /** Store paths this one refers to (its direct dependencies), possibly itself. */
  references: string[];
}

/** A package the Nix files listed, after the build. */
export interface BuiltPackage {
  name: string;
  drvPath: string;
  outPath: string;
  /** Project-relative file that listed it. */
  source: string;
}

/** Image settings that came from envDir/image.nix. */
export interface NixImageSettings {
  cmd?: string[];
  env?: Record<string, string>;
  workingDir?: string;
  user?: string;
}

export type BuildPhase = 'hash' | 'registryCheck' | 'evaluate' | 'build' | 'closure';

/** What a Nix build hands to image assembly. */
export interface BuildResult {
  /** The identity the result belongs to. */
  name: string;
  tag: string;
  /** The Nix system the packages were built for (x86_64-linux, aarch64-linux, ...). */
  system: string;
  /** Packages of envDir/default.nix: their closure forms the base layers. */
  base: BuiltPackage[];
  /** Packages of the userConfig files, in config order. */
  user: BuiltPackage[];
  /** Every path in the closure of base and user, keyed by store path. */
  closure: Record<string, StorePathInfo>;
  image: NixImageSettings;
  /** Milliseconds spent in each phase that ran. */
  phases: Partial<Record<BuildPhase, number>>;
  /** Derivations Nix actually built (not taken from the store), here or remotely. */
  built: string[];
  /** Store paths fetched from a substituter (absent in results remembered from older versions). */
  fetched?: string[];
  /** Derivations of `built` that a remote builder built. */
  builtRemotely?: string[];
}
