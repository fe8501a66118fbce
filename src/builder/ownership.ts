import type Docker from 'dockerode';
import { LABEL_ROLE, isNotFound } from '../engine/engine.js';
import { formatOwner, ownerAlive, parseOwner, selfOwner } from '../util/owner.js';

/** The project directory a builder container works for. */
export const LABEL_PROJECT = 'org.nixdocker.project';
/** `host/pid/start` of the nixdocker process that made it (see util/owner.ts). */
export const LABEL_OWNER = 'org.nixdocker.owner';
export const LABEL_VOLUME = 'org.nixdocker.volume';

/** Labels of a builder container this process makes. */
export function builderLabels(volume: string, projectDir?: string): Record<string, string> {
  return {
    [LABEL_ROLE]: 'build',
    [LABEL_VOLUME]: volume,
    [LABEL_OWNER]: formatOwner(selfOwner()),
    ...(projectDir ? { [LABEL_PROJECT]: projectDir } : {}),
  };
}

/**
 * PID 1's child of a builder container: it lives while the owner touches
 * HEARTBEAT_FILE (an exec every few seconds) and exits after `$1` seconds
 * without, which stops the container (and AutoRemove removes it). A killed
 * owner so leaves nothing running for longer than builder.idleSeconds. Only
 * sh, sleep and rm: it works in busybox and in the nixos/nix image alike.
 */
export const HEARTBEAT_FILE = '/.nixdocker-alive';
export const KEEP_ALIVE = `n=0; while [ "$n" -lt "$1" ]; do sleep 1; if [ -e ${HEARTBEAT_FILE} ]; then rm -f ${HEARTBEAT_FILE}; n=0; else n=$((n+1)); fi; done`;

export interface Orphan {
  id: string;
  /** The owner as labelled, or null for a container from before owners were labelled. */
  owner: string | null;
  state: string;
}

/**
 * Builder containers of this project whose owning process is gone (killed,
 * crashed), plus unlabelled ones of older versions on the project's volume,
 * whose keep-alive never ends. A container owned by a live process, or by
 * a process on another host (which this one cannot check), is left alone.
 */
export async function findOrphans(docker: Docker, projectDir: string, volume: string): Promise<Orphan[]> {
  const [mine, onVolume] = await Promise.all([
    docker.listContainers({ all: true, filters: { label: [`${LABEL_ROLE}=build`, `${LABEL_PROJECT}=${projectDir}`] } }),
    docker.listContainers({ all: true, filters: { label: [`${LABEL_ROLE}=build`, `${LABEL_VOLUME}=${volume}`] } }),
  ]);
  const orphans: Orphan[] = [];
  for (const c of mine) {
    const owner = parseOwner(c.Labels?.[LABEL_OWNER]);
    if (owner && ownerAlive(owner) !== false) continue;
    orphans.push({ id: c.Id, owner: c.Labels?.[LABEL_OWNER] ?? null, state: c.State });
  }
  for (const c of onVolume) {
    if (c.Labels?.[LABEL_OWNER] || orphans.some((o) => o.id === c.Id)) continue;
    orphans.push({ id: c.Id, owner: null, state: c.State });
  }
  return orphans;
}

/** Removes the orphans (see findOrphans) and returns them. */
export async function removeOrphans(docker: Docker, projectDir: string, volume: string): Promise<Orphan[]> {
  const orphans = await findOrphans(docker, projectDir, volume);
  await Promise.all(
    orphans.map(async (o) => {
      try {
        await docker.getContainer(o.id).remove({ force: true });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
    }),
  );
  return orphans;
}
