import { UserError } from '../errors.js';

/**
 * An OCI platform (image-spec `platform`): what an image's binaries run on.
 * nixdocker takes it from the system Nix built for, never from the machine
 * that runs the CLI, so a label always matches the binaries inside.
 */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Nix system → OCI platform, for the systems a Linux container can run. */
const NIX_SYSTEMS: Record<string, Platform> = {
  'x86_64-linux': { os: 'linux', architecture: 'amd64' },
  'aarch64-linux': { os: 'linux', architecture: 'arm64' },
  'i686-linux': { os: 'linux', architecture: '386' },
  'armv7l-linux': { os: 'linux', architecture: 'arm', variant: 'v7' },
  'armv6l-linux': { os: 'linux', architecture: 'arm', variant: 'v6' },
  'powerpc64le-linux': { os: 'linux', architecture: 'ppc64le' },
  'riscv64-linux': { os: 'linux', architecture: 'riscv64' },
  's390x-linux': { os: 'linux', architecture: 's390x' },
};

/** Engines and kernels name architectures their own way: podman says amd64, dockerd x86_64. */
const ARCH_ALIASES: Record<string, string> = {
  x86_64: 'amd64',
  x64: 'amd64',
  aarch64: 'arm64',
  i386: '386',
  i686: '386',
  armhf: 'arm',
  armv7l: 'arm',
};

export function platformOfNixSystem(system: string): Platform {
  const p = NIX_SYSTEMS[system];
  if (!p) {
    throw new UserError(
      `The builder's Nix builds for ${system}, which no Linux container image can hold.`,
      `use a builder whose Nix builds for one of ${Object.keys(NIX_SYSTEMS).join(', ')} (builder.image)`,
    );
  }
  return { ...p };
}

/** The Nix system a platform's builder should report. */
export function nixSystemOf(p: Platform): string | undefined {
  return Object.entries(NIX_SYSTEMS).find(([, q]) => samePlatform(p, q))?.[0];
}

/** An engine's own name of its architecture (`/info` Architecture, `/version` Arch) as an OCI platform. */
export function platformOfEngine(os: string | undefined, arch: string): Platform {
  const architecture = ARCH_ALIASES[arch] ?? arch;
  return { os: (os || 'linux').toLowerCase(), architecture, ...(arch === 'armv7l' ? { variant: 'v7' } : {}) };
}

/** "linux/arm64", "linux/arm/v7": the form `--platform` and the `platforms` setting use. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join('/');
}

/** For tag suffixes and volume names: "linux-arm64", "linux-arm-v7". */
export function platformSlug(p: Platform): string {
  return formatPlatform(p).replace(/\//g, '-');
}

export function samePlatform(a: Platform, b: Platform): boolean {
  // arm64's variant v8 is the only arm64 there is; an absent variant means the same.
  const variant = (p: Platform) => (p.architecture === 'arm64' && p.variant === 'v8' ? undefined : p.variant);
  return a.os === b.os && a.architecture === b.architecture && variant(a) === variant(b);
}

const KNOWN = Object.values(NIX_SYSTEMS).map(formatPlatform);

/** Why a platform name is not one nixdocker can build, or null when it is. */
export function platformProblem(name: string): string | null {
  const parts = name.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((x) => x === '')) return `"${name}" is not of the form os/arch or os/arch/variant (like "linux/arm64")`;
  const p = normalisePlatform({ os: parts[0]!, architecture: parts[1]!, variant: parts[2] });
  if (!nixSystemOf(p)) return `"${name}" is not a platform nixdocker builds (known: ${KNOWN.join(', ')})`;
  return null;
}

/** Parses "linux/arm64" (aliases like linux/x86_64 allowed); a UserError naming `where` otherwise. */
export function parsePlatform(name: string, where: string): Platform {
  const problem = platformProblem(name);
  if (problem) throw new UserError(`${where}: ${problem}.`, `write platforms as os/arch, for example linux/amd64 or linux/arm64`);
  const [os, architecture, variant] = name.split('/') as [string, string, string | undefined];
  return normalisePlatform({ os, architecture, variant });
}

function normalisePlatform(p: Platform): Platform {
  const architecture = ARCH_ALIASES[p.architecture] ?? p.architecture;
  const variant = architecture === 'arm64' && p.variant === 'v8' ? undefined : p.variant;
  return { os: p.os.toLowerCase(), architecture, ...(variant ? { variant } : {}) };
}
