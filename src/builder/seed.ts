import type Docker from 'dockerode';
import { UserError } from '../errors.js';
import { runCaptured } from '../engine/run.js';
import type { BuilderTarget } from './container-runner.js';
import { builderLabels } from './ownership.js';

/**
 * Which image's /nix the store volume holds: the engine fills an empty volume
 * from the image once, so after builder.image changes the old store would
 * hide the new image's Nix. The volume records the image id that seeded it.
 */
export const SEED_FILE = '/nix/var/nixdocker/seeded-by';

/** Where the volume is mounted while the new image's own /nix stays visible. */
const SEED_MOUNT = '/nixdocker-seed';

/**
 * Brings the image's /nix into the volume: store paths it lacks (copied),
 * their validity (the image's Nix database loaded into the volume's), and the
 * image's profiles (so its PATH names the new Nix); then records the image.
 * Only what is missing is copied, so running it again changes nothing. Run
 * in a fresh container of the image, with sh, cp and the image's nix-store.
 */
const RESEED = [
  'set -e',
  `v=${SEED_MOUNT}/nix`,
  'mkdir -p "$v/store" "$v/var/nixdocker"',
  'if [ -d /nix/store ]; then',
  '  for p in /nix/store/*; do',
  '    [ -e "$p" ] || continue',
  '    n=${p##*/}',
  // Another process may copy the same path meanwhile: a path that is there afterwards is fine.
  '    [ -e "$v/store/$n" ] || cp -a "$p" "$v/store/" || [ -e "$v/store/$n" ]',
  '  done',
  'fi',
  'if [ -d /nix/var/nix/db ]; then',
  '  nix-store --dump-db > /tmp/nixdocker-seed-db',
  '  NIX_STATE_DIR=$v/var/nix nix-store --load-db < /tmp/nixdocker-seed-db',
  'fi',
  'if [ -d /nix/var/nix/profiles ]; then mkdir -p "$v/var/nix/profiles" && cp -a /nix/var/nix/profiles/. "$v/var/nix/profiles/"; fi',
  'printf "%s\\n%s\\n" "$1" "$2" > "$v/var/nixdocker/seeded-by.tmp"',
  'mv -f "$v/var/nixdocker/seeded-by.tmp" "$v/var/nixdocker/seeded-by"',
].join('\n');

/** The image id recorded in the volume (first line of SEED_FILE), or null. */
export function parseSeed(text: string): string | null {
  const first = text.split('\n')[0]?.trim();
  return first ? first : null;
}

/**
 * Makes the volume hold the Nix of `imageId`: nothing to do when it records
 * that image; else the image's /nix is brought in. When that fails, no build
 * runs with a stale Nix: the error names the exact commands.
 */
export async function ensureSeeded(
  docker: Docker,
  target: BuilderTarget,
  imageId: string,
  recorded: string | null,
  opts: { projectDir?: string; signal?: AbortSignal; onReseed?: (from: string | null) => void },
): Promise<'current' | 'reseeded'> {
  if (recorded === imageId) return 'current';
  opts.onReseed?.(recorded);
  const r = await runCaptured(docker, {
    image: target.image,
    cmd: ['sh', '-c', RESEED, 'nixdocker-seed', imageId, target.image],
    volumes: [{ name: target.volume, target: `${SEED_MOUNT}/nix` }],
    labels: builderLabels(target.volume, opts.projectDir),
    ...(target.platform ? { platform: target.platform } : {}),
    signal: opts.signal,
  });
  if (r.exitCode !== 0) {
    opts.signal?.throwIfAborted();
    const why = r.output.trim().split('\n').slice(-3).join(' / ') || `exit code ${r.exitCode}`;
    throw new UserError(
      `The store volume ${target.volume} (builder.volume) was filled from ${recorded ? `another image (${recorded.slice(0, 19)})` : 'an image nixdocker did not record'}, and bringing the Nix of ${target.image} (builder.image) into it failed: ${why}. Building would run the old Nix, so nixdocker stops here.`,
      `run \`nixdocker builder rm --volume\` and then \`nixdocker builder create\` (the store starts afresh from ${target.image}; what was built is built again), or set builder.image back`,
    );
  }
  return 'reseeded';
}
