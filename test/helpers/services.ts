import Docker from 'dockerode';
import { cp, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Test } from 'uvu';
import { REPO_ROOT, tmpProject } from './project.js';

/** The parts integration suites run against, as scripts/services.sh starts them. */
export const REGISTRY = process.env.NIXDOCKER_TEST_REGISTRY ?? '127.0.0.1:5000';
export const BUILDER_IMAGE = process.env.NIXDOCKER_TEST_BUILDER_IMAGE ?? 'localhost/nixdocker-test-builder:latest';
/** The emulated arm64 test builder (qemu-user-static), in podman. */
export const ARM64_BUILDER_IMAGE = process.env.NIXDOCKER_TEST_ARM64_BUILDER_IMAGE ?? 'localhost/nixdocker-test-builder-arm64:latest';
/** Nix and sshd: the remote builder the remote-builder suite reaches over ssh. */
export const SSH_BUILDER_IMAGE = process.env.NIXDOCKER_TEST_SSH_BUILDER_IMAGE ?? 'localhost/nixdocker-test-ssh-builder:latest';
/** Debian's dockerd as a second engine, with the amd64 test builder loaded. */
export const DOCKERD_HOST = process.env.NIXDOCKER_TEST_DOCKERD_HOST ?? 'unix:///tmp/nixdocker-services/dockerd.sock';
export const SERVICES_DIR = process.env.NIXDOCKER_SERVICES_DIR ?? '/tmp/nixdocker-services';
/** nginx with ngx_http_dav_module: takes PUT (and DELETE, MKCOL) under /, serves GET only under /readonly/. */
export const DAV_URL = process.env.NIXDOCKER_TEST_DAV_URL ?? 'http://127.0.0.1:5080';
/** The directory nginx serves at DAV_URL. */
export const DAV_DIR = process.env.NIXDOCKER_TEST_DAV_DIR ?? path.join(SERVICES_DIR, 'dav', 'root');

export type Part = 'engine' | 'registry' | 'builder-image' | 'nix' | 'arm64-builder' | 'ssh-builder' | 'dockerd' | 'tmux' | 'dav';

/** A dockerode client for a DOCKER_HOST-style address (unix:// only: the test services). */
export function dockerAt(host: string): Docker {
  return new Docker({ socketPath: host.replace(/^unix:\/\//, '') });
}

/**
 * services.sh starts the slow parts in the background and writes their state to
 * $NIXDOCKER_SERVICES_DIR/parts/NAME ("starting", then "ready" or "failed: ..." as the last
 * line). Waits for the last line to leave "starting", polling the file within a bound.
 */
async function backgroundPart(name: string, boundMs: number): Promise<string | null> {
  const file = path.join(SERVICES_DIR, 'parts', name);
  const until = Date.now() + boundMs;
  let announced = false;
  for (;;) {
    let state: string;
    try {
      state = (await readFile(file, 'utf8')).trim().split('\n').pop() ?? '';
    } catch {
      return `${name}: services.sh has not started it (no ${file})`;
    }
    if (state === 'ready') return null;
    if (state !== 'starting') return `${name}: ${state}`;
    if (Date.now() > until) return `${name}: still starting after ${boundMs / 1000} s`;
    if (!announced) process.stderr.write(`[wait] ${name} is still starting in the background (services.sh)\n`);
    announced = true;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

const HOW = 'start them with `eval "$(bash scripts/services.sh up)"` (or run `npm test`, which does)';

async function partMissing(part: Part): Promise<string | null> {
  try {
    switch (part) {
      case 'engine':
        if (!process.env.DOCKER_HOST) return 'DOCKER_HOST is not set';
        await new Docker().ping();
        return null;
      case 'builder-image':
        await new Docker().getImage(BUILDER_IMAGE).inspect();
        return null;
      case 'registry': {
        const r = await fetch(`http://${REGISTRY}/v2/`, { signal: AbortSignal.timeout(3000) });
        return r.ok ? null : `registry at ${REGISTRY} answered ${r.status}`;
      }
      case 'arm64-builder': {
        // A cold start builds an arm64 rootfs under emulation: minutes, once per cache.
        const waited = await backgroundPart('arm64-builder', 15 * 60_000);
        if (waited) return waited;
        await new Docker().getImage(ARM64_BUILDER_IMAGE).inspect();
        return null;
      }
      case 'ssh-builder': {
        const waited = await backgroundPart('ssh-builder', 10 * 60_000);
        if (waited) return waited;
        await new Docker().getImage(SSH_BUILDER_IMAGE).inspect();
        return null;
      }
      case 'dockerd': {
        const waited = await backgroundPart('dockerd', 5 * 60_000);
        if (waited) return waited;
        const docker = dockerAt(DOCKERD_HOST);
        await docker.ping();
        await docker.getImage(BUILDER_IMAGE).inspect();
        return null;
      }
      case 'nix': {
        const { execa } = await import('execa');
        await execa('nix-build', ['--version']);
        return null;
      }
      case 'dav': {
        const r = await fetch(`${DAV_URL}/_ping`, { signal: AbortSignal.timeout(3000) });
        return r.ok ? null : `WebDAV server at ${DAV_URL} answered ${r.status}`;
      }
      case 'tmux': {
        // The progress suite draws on a real terminal: a tmux pane.
        const { execa } = await import('execa');
        await execa('tmux', ['-V']);
        return null;
      }
    }
  } catch (err) {
    return `${part}: ${(err as Error).message}`;
  }
}

/**
 * Registers the suite's tests only when the parts it needs run. Outside CI a
 * missing part skips the suite with a message saying how to start it; in CI
 * (CI set) the suite fails instead, so a broken harness never passes quietly.
 */
export async function requireParts(test: Test, parts: Part[]): Promise<boolean> {
  const missing = (await Promise.all(parts.map(partMissing))).filter((m): m is string => m !== null);
  if (missing.length === 0) return true;
  const message = `missing ${missing.join('; ')}; ${HOW}`;
  if (process.env.CI) {
    test('required services are running', () => {
      throw new Error(message);
    });
  } else {
    process.stderr.write(`\n[skip] ${message}\n`);
    test.skip('required services are running', () => {});
  }
  return false;
}

/** A copy of examples/offline with its own store volume and test settings. */
export async function offlineProject(opts: { volume: string; image?: string; config?: Record<string, unknown>; files?: Record<string, string> }): Promise<string> {
  const dir = await tmpProject({});
  await cp(path.join(REPO_ROOT, 'examples', 'offline'), dir, { recursive: true });
  const rc = JSON.parse(await readFile(path.join(dir, '.nixdockerrc.json'), 'utf8'));
  const config = {
    ...rc,
    ...opts.config,
    builder: { ...rc.builder, image: opts.image ?? BUILDER_IMAGE, volume: opts.volume, ...(opts.config?.builder as object) },
    registry: { host: REGISTRY, ...(opts.config?.registry as object) },
  };
  await writeFile(path.join(dir, '.nixdockerrc.json'), JSON.stringify(config, null, 2));
  for (const [rel, content] of Object.entries(opts.files ?? {})) await writeFile(path.join(dir, rel), content);
  return dir;
}

/** Runs a command in a throwaway builder container with the volume at /nix. */
export async function inVolume(volume: string, cmd: string[]): Promise<{ exitCode: number; output: string }> {
  const { runInBuilder } = await import('../../src/builder/builder.js');
  return runInBuilder(new Docker(), { image: BUILDER_IMAGE, volume }, cmd);
}

/** Build containers still present for a volume (there should be none after a build). */
export async function leftoverContainers(volume: string): Promise<string[]> {
  const list = await new Docker().listContainers({ all: true, filters: { label: [`org.nixdocker.volume=${volume}`] } });
  return list.map((c) => c.Id);
}

export async function removeVolume(volume: string): Promise<void> {
  const docker = new Docker();
  for (const id of await leftoverContainers(volume)) await docker.getContainer(id).remove({ force: true }).catch(() => {});
  await docker.getVolume(volume).remove().catch(() => {});
}
