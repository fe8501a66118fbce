import { UserError } from '../errors.js';

/** A container port published on the host, as `docker run -p` takes it. */
export interface PublishedPort {
  /** Host address to bind; unset means every address. */
  hostIp?: string;
  /** Host port; unset means one the engine picks. */
  hostPort?: number;
  containerPort: number;
  protocol: 'tcp' | 'udp';
}

const PUBLISH_FORM = '[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|/udp], e.g. 8888:8888 or 127.0.0.1:8080:80';

/**
 * Parses `-p` values the way `docker run` reads them: `8080:80`,
 * `127.0.0.1:8080:80`, `[::1]:8080:80`, `127.0.0.1::80` (any host port),
 * `80` (any host port), with `/udp` or `/tcp` after. `where` names the
 * option or setting for the error.
 */
export function parsePublish(value: string, where: string): PublishedPort {
  const bad = (why: string) =>
    new UserError(`${where} "${value}" is not a port to publish: ${why}.`, `write it as ${PUBLISH_FORM}`);
  const [spec, proto = 'tcp', extra] = value.split('/');
  if (extra !== undefined || (proto !== 'tcp' && proto !== 'udp')) throw bad('the protocol must be tcp or udp');
  let ip: string | undefined;
  let rest = spec!;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(.*)$/.exec(rest);
  if (v6) {
    ip = v6[1];
    rest = v6[2]!;
  }
  const parts = rest.split(':');
  if (!v6 && parts.length === 3) ip = parts.shift();
  if (parts.length > 2 || (v6 && parts.length !== 2)) throw bad('too many colons');
  const containerText = parts.pop()!;
  const hostText = parts.pop();
  const port = (text: string, what: string): number => {
    const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(n >= 1 && n <= 65535)) throw bad(`${what} "${text}" must be a number from 1 to 65535`);
    return n;
  };
  if (ip !== undefined && !/^[0-9a-fA-F:.]+$/.test(ip)) throw bad(`"${ip}" is not an IP address`);
  return {
    ...(ip ? { hostIp: ip } : {}),
    ...(hostText ? { hostPort: port(hostText, 'the host port') } : {}),
    containerPort: port(containerText, 'the container port'),
    protocol: proto,
  };
}

/**
 * Parses `-e` values the way `docker run` reads them: `KEY=VALUE` sets it;
 * a bare `KEY` passes the variable of this process, and nothing when it is
 * unset. Returns the `KEY=VALUE` string for the engine, or null.
 */
export function parseEnvOption(value: string, where: string, env: NodeJS.ProcessEnv = process.env): string | null {
  const eq = value.indexOf('=');
  const key = eq < 0 ? value : value.slice(0, eq);
  if (!/^[^=\0\s]+$/.test(key)) {
    throw new UserError(`${where} "${value}" has no variable name before "=".`, 'write it as KEY=VALUE, or KEY alone to pass the variable of this shell');
  }
  if (eq >= 0) return value;
  const v = env[key];
  return v === undefined ? null : `${key}=${v}`;
}

/** The engine's ExposedPorts and PortBindings for a list of published ports. */
export function portBindings(ports: readonly PublishedPort[]): {
  ExposedPorts: Record<string, object>;
  PortBindings: Record<string, { HostIp: string; HostPort: string }[]>;
} {
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of ports) {
    const key = `${p.containerPort}/${p.protocol}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: p.hostIp ?? '', HostPort: p.hostPort ? String(p.hostPort) : '' });
  }
  return { ExposedPorts: exposed, PortBindings: bindings };
}
