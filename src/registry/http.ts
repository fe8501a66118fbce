/**
 * One HTTP exchange over node:http(s) with keep-alive agents. A body may be a
 * stream, which is piped with a fixed Content-Length so a large blob never sits
 * in memory. Nothing here retries, authenticates or logs.
 */
import http from 'node:http';
import https from 'node:https';
import { pipeline } from 'node:stream/promises';

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string>;
  body?: Buffer | NodeJS.ReadableStream;
  signal?: AbortSignal;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Must be consumed or destroyed by the caller, or the socket is not reused. */
  body: http.IncomingMessage;
}

export class HttpAgents {
  readonly http = new http.Agent({ keepAlive: true, maxSockets: 16 });
  readonly https = new https.Agent({ keepAlive: true, maxSockets: 16 });
  destroy(): void {
    this.http.destroy();
    this.https.destroy();
  }
}

export function send(agents: HttpAgents, req: HttpRequest, idleTimeoutMs: number): Promise<HttpResponse> {
  const isHttps = req.url.protocol === 'https:';
  const headers: Record<string, string> = { 'user-agent': 'nixdocker', ...req.headers };
  if (Buffer.isBuffer(req.body)) headers['content-length'] = String(req.body.length);
  else if (!req.body && req.method !== 'GET' && req.method !== 'HEAD') headers['content-length'] ??= '0';

  return new Promise<HttpResponse>((resolve, reject) => {
    const options: http.RequestOptions = {
      method: req.method,
      headers,
      agent: isHttps ? agents.https : agents.http,
      timeout: idleTimeoutMs,
      ...(req.signal && { signal: req.signal }),
    };
    const clientReq = (isHttps ? https : http).request(req.url, options);
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    clientReq.on('timeout', () => {
      clientReq.destroy(Object.assign(new Error(`no data from ${req.url.host} for ${idleTimeoutMs} ms`), { code: 'ETIMEDOUT' }));
    });
    clientReq.on('error', fail);
    clientReq.on('response', (res) => {
      // A registry may answer (401, 400) before it read a streamed body; it then
      // closes the connection and the pipeline below fails, which no longer matters.
      settled = true;
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res });
    });

    const body = req.body;
    if (body === undefined) clientReq.end();
    else if (Buffer.isBuffer(body)) clientReq.end(body);
    else {
      pipeline(body, clientReq).catch((err: Error) => {
        // The request's own 'error' carries the connection failure; this is the source's.
        if (!clientReq.destroyed) clientReq.destroy(err);
        fail(err);
      });
    }
  });
}

/** Reads a response body into memory (manifests, tag lists, error bodies: all small). */
export async function readBody(res: HttpResponse, limit = 16 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    size += (chunk as Buffer).length;
    if (size > limit) {
      res.body.destroy();
      throw new Error(`response body over ${limit} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Drains a response we do not need, so its socket goes back to the pool. */
export function discard(res: HttpResponse): void {
  res.body.resume();
}

export function header(res: HttpResponse, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
