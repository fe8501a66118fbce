/**
 * Containers the engine created in a time window, from its event log, so a
 * benchmark can show that a command started none (a list before and after
 * would miss a container created and removed in between).
 */
import http from 'node:http';

interface EngineEvent {
  Type?: string;
  Action?: string;
  status?: string;
  id?: string;
  timeNano?: number;
  time?: number;
  Actor?: { ID?: string; Attributes?: Record<string, string> };
}

function socketPath(): string {
  const host = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
  if (!host.startsWith('unix://')) throw new Error(`container events: DOCKER_HOST=${host} is not a unix socket`);
  return host.slice('unix://'.length);
}

function get(pathAndQuery: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ socketPath: socketPath(), path: pathAndQuery, timeout: 10_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('engine events: timed out')));
    req.on('error', reject);
  });
}

/**
 * Container `create` events between `fromMs` and `toMs` (wall clock, ms)
 * whose labels match `labels` (any one of the given key=value pairs).
 * podman's libpod endpoint takes an RFC 3339 `since` and, with
 * stream=false, returns what it has; Docker's takes unix seconds and `until`.
 */
export async function containersCreated(fromMs: number, toMs: number, labels: Record<string, string>): Promise<string[]> {
  const filters = encodeURIComponent(JSON.stringify({ type: ['container'], event: ['create'] }));
  const since = new Date(fromMs - 1000).toISOString().replace(/\.\d+Z$/, 'Z');
  let res = await get(`/v4.0.0/libpod/events?stream=false&since=${since}&filters=${filters}`);
  if (res.status === 404) {
    res = await get(`/events?since=${Math.floor(fromMs / 1000) - 1}&until=${Math.ceil(toMs / 1000) + 1}&filters=${filters}`);
  }
  if (res.status !== 200) throw new Error(`engine events: HTTP ${res.status}: ${res.body.slice(0, 300)}`);
  const ids: string[] = [];
  for (const line of res.body.split('\n')) {
    if (!line.trim()) continue;
    const e = JSON.parse(line) as EngineEvent;
    const at = e.timeNano ? e.timeNano / 1e6 : (e.time ?? 0) * 1000;
    if ((e.Action ?? e.status) !== 'create' || at < fromMs - 5 || at > toMs + 5) continue;
    const attrs = e.Actor?.Attributes ?? {};
    if (Object.entries(labels).some(([k, v]) => attrs[k] === v)) ids.push(e.Actor?.ID ?? e.id ?? '?');
  }
  return ids;
}
