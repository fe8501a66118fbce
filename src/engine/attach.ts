import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import type Docker from 'dockerode';

interface ModemOptions {
  socketPath?: string | (() => Promise<string>);
  host?: string;
  port?: string | number;
  protocol?: string;
  version?: string;
  ca?: unknown;
  cert?: unknown;
  key?: unknown;
  getSocketPath?: () => Promise<string>;
}

/**
 * Attaches to a container's stdin and output over a raw HTTP upgrade with an
 * empty request body. dockerode sends its options as the body of the attach
 * request, and podman feeds that body to the container's stdin (so a program
 * reading stdin gets `{"stream":true,...}` first); with no body at all,
 * dockerode leaves the request open and podman never answers. An explicit
 * `Content-Length: 0` works with both engines. Over ssh, dockerode's own
 * attach is used.
 */
export async function attachInteractive(docker: Docker, container: Docker.Container): Promise<NodeJS.ReadWriteStream> {
  const m = docker.modem as unknown as ModemOptions;
  if (m.protocol === 'ssh') {
    return container.attach({ stream: true, stdin: true, stdout: true, stderr: true, hijack: true });
  }
  const socketPath = m.host ? undefined : m.getSocketPath ? await m.getSocketPath() : typeof m.socketPath === 'function' ? await m.socketPath() : m.socketPath;
  const tls = m.protocol === 'https';
  const request = (tls ? https : http).request({
    socketPath,
    host: m.host,
    port: m.port,
    ...(tls ? { ca: m.ca, cert: m.cert, key: m.key } : {}),
    method: 'POST',
    path: `${m.version ? `/${m.version}` : ''}/containers/${container.id}/attach?stream=1&stdin=1&stdout=1&stderr=1`,
    headers: { Connection: 'Upgrade', Upgrade: 'tcp', 'Content-Length': 0 },
  } as http.RequestOptions);
  return new Promise<NodeJS.ReadWriteStream>((resolve, reject) => {
    request.on('upgrade', (_res, socket: Duplex, head: Buffer) => {
      if (head.length > 0) socket.unshift(head);
      resolve(socket as unknown as NodeJS.ReadWriteStream);
    });
    request.on('response', (res) => {
      res.resume();
      reject(new Error(`the engine refused to attach (HTTP ${res.statusCode})`));
    });
    request.on('error', reject);
    request.end();
  });
}
