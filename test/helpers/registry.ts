/**
 * Real registries for tests: the Debian `docker-registry` binary on a free
 * loopback port with its storage in a temporary directory, optionally behind
 * htpasswd or a token server (a small one in this process, RS256 with an x5c
 * certificate chain, as the distribution registry checks it).
 */
import { createHash, createSign, randomUUID, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';

const made: string[] = [];

export async function tmpDir(prefix = 'nixdocker-registry-'): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export async function cleanupDirs(): Promise<void> {
  await Promise.all(made.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

/** A port nothing listens on right now (the kernel's pick, then released). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, host, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it is true; fails after `timeoutMs`. */
export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface RegistryAuthConfig {
  htpasswd?: { user: string; password: string };
  token?: { realm: string; service: string; issuer: string; rootCertBundle: string };
}

export interface TestRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  port: number;
  /** Storage root: docker/registry/v2/{blobs,repositories} under it. */
  dataDir: string;
  /** Starts it again on the same port and storage. */
  start(): Promise<void>;
  /** SIGKILL, and waits for the exit: the registry gets no chance to finish anything. */
  kill(): Promise<void>;
  /** What it printed, for failing tests. */
  output(): string;
}

const running = new Set<ResultPromise>();

/**
 * Starts a registry; `port` fixes its port (5001-5003 are the ones the engine
 * treats as insecure, see scripts/services.sh), else a free one is taken.
 */
export async function startRegistry(auth: RegistryAuthConfig = {}, opts: { port?: number } = {}): Promise<TestRegistry> {
  const dir = await tmpDir();
  const port = opts.port ?? (await freePort());
  const host = `127.0.0.1:${port}`;
  const dataDir = path.join(dir, 'data');
  let authYaml = '';
  if (auth.htpasswd) {
    const { stdout } = await execa('htpasswd', ['-Bbn', auth.htpasswd.user, auth.htpasswd.password]);
    await writeFile(path.join(dir, 'htpasswd'), `${stdout}\n`);
    authYaml = `auth:\n  htpasswd:\n    realm: test-realm\n    path: ${path.join(dir, 'htpasswd')}\n`;
  } else if (auth.token) {
    const t = auth.token;
    authYaml = `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.rootCertBundle}\n`;
  }
  const config = path.join(dir, 'config.yml');
  await writeFile(
    config,
    `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${dataDir}
  delete:
    enabled: true
http:
  addr: ${host}
  secret: nixdocker-test-secret
${authYaml}`,
  );

  let proc: ResultPromise | undefined;
  let out = '';
  const start = async () => {
    const p = execa('docker-registry', ['serve', config], { reject: false, all: true, stdin: 'ignore' });
    proc = p;
    running.add(p);
    p.all?.on('data', (d: Buffer) => (out += d.toString()));
    void p.finally(() => running.delete(p));
    let exited = false;
    void p.then(() => (exited = true));
    await waitUntil(`the registry on ${host}`, async () => {
      if (exited) throw new Error(`docker-registry exited:\n${out}`);
      const status = await pingStatus(host);
      return status === 200 || status === 401;
    });
  };
  const kill = async () => {
    if (!proc) return;
    proc.kill('SIGKILL');
    await proc;
    proc = undefined;
  };
  await start();
  return { host, port, dataDir, start, kill, output: () => out };
}

/** Kills every registry this process started (call from a suite's `after`). */
export async function stopRegistries(): Promise<void> {
  await Promise.allSettled(
    [...running].map(async (p) => {
      p.kill('SIGKILL');
      await p;
    }),
  );
}

function pingStatus(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(`http://${host}/v2/`, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

/** Every blob file in the registry's storage (one per distinct digest), as digests. */
export async function storedBlobs(dataDir: string): Promise<string[]> {
  const { stdout } = await execa('find', [path.join(dataDir, 'docker/registry/v2/blobs'), '-name', 'data', '-type', 'f'], { reject: false });
  return String(stdout)
    .split('\n')
    .filter(Boolean)
    .map((p) => `sha256:${path.basename(path.dirname(p))}`);
}

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  rootCertBundle: string;
  /** Every token request: the scopes asked for and the user, if any. */
  requests: { scopes: string[]; user: string | null }[];
  close(): Promise<void>;
}

/**
 * A token service: a right user/password (HTTP Basic) gets every scope it
 * asks for, anonymous gets a token with no access, a wrong password a 401.
 */
export async function startTokenServer(users: Record<string, string>): Promise<TokenServer> {
  const dir = await tmpDir('nixdocker-token-');
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await execa('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=nixdocker-test-token']);
  const key = await readFile(keyFile, 'utf8');
  const certDer = new X509Certificate(await readFile(certFile)).raw;
  const issuer = 'nixdocker-test-issuer';
  const service = 'nixdocker-test-registry';
  const requests: TokenServer['requests'] = [];

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const scopes = url.searchParams.getAll('scope');
    let user: string | null = null;
    const auth = req.headers.authorization;
    if (auth?.startsWith('Basic ')) {
      const [u, ...rest] = Buffer.from(auth.slice(6), 'base64').toString('utf8').split(':');
      if (users[u!] === undefined || users[u!] !== rest.join(':')) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"details":"wrong credentials"}');
        return;
      }
      user = u!;
    }
    requests.push({ scopes, user });
    const now = Math.floor(Date.now() / 1000);
    const access = user
      ? scopes.map((s) => {
          const parts = s.split(':');
          return { type: parts[0], name: parts.slice(1, -1).join(':'), actions: parts.at(-1)!.split(',') };
        })
      : [];
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    const head = b64({ typ: 'JWT', alg: 'RS256', x5c: [certDer.toString('base64')] });
    const claims = b64({ iss: issuer, sub: user ?? '', aud: service, exp: now + 300, nbf: now - 10, iat: now, jti: randomUUID(), access });
    const signature = createSign('RSA-SHA256').update(`${head}.${claims}`).sign(key).toString('base64url');
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token: `${head}.${claims}.${signature}`, expires_in: 300 }));
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: certFile,
    requests,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
