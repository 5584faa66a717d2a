// A real registry for tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with a random free port and a
// temp storage directory, optionally behind htpasswd (bcrypt) auth, token auth (served by a small token server
// below that signs RS256 JWTs with a test key the registry trusts) and TLS (a test CA made with openssl).
// Everything is stopped and removed in t.teardown.
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../../sys/exec.js';

// (not from ./index.js, which loads ava: the benchmark uses this module too)
const makeTempDir = (prefix: string): Promise<string> => mkdtemp(join(tmpdir(), prefix));
const removeDir = (dir: string): Promise<void> => rm(dir, { recursive: true, force: true, maxRetries: 3 });

type Teardown = { teardown(fn: () => unknown): void };

export const REGISTRY_BIN = '/usr/bin/docker-registry';
export const haveRegistry = existsSync(REGISTRY_BIN);
export const haveSkopeo = existsSync('/usr/bin/skopeo');

export interface RegistryOptions {
  /** htpasswd users (bcrypt) */
  htpasswd?: Record<string, string>;
  /** token auth, with a token server started for it */
  token?: TokenServerOptions;
  /** serve https with a certificate from a fresh test CA (its PEM is `caCert`) */
  tls?: boolean;
}

export interface TestRegistry {
  /** 127.0.0.1:PORT */
  host: string;
  port: number;
  /** the registry's storage root */
  storage: string;
  /** CA certificate (PEM file) that signed the TLS certificate */
  caCert?: string;
  tokenServer?: TokenServer;
  /** the registry's log (for failure messages) */
  log(): Promise<string>;
  stop(): Promise<void>;
}

/** freePort asks the kernel for a free port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** bcryptLine makes an htpasswd line: `htpasswd -nbB` (apache2-utils), else Python's crypt with bcrypt. */
function bcryptLine(user: string, password: string): string {
  try {
    return execFileSync('htpasswd', ['-nbB', user, password]).toString().trim();
  } catch {
    const hash = execFileSync(
      'python3',
      ['-c', 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))', password],
      {
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    )
      .toString()
      .trim();
    return `${user}:${hash}`;
  }
}

/** makeCa makes a test CA and a server certificate for 127.0.0.1/localhost, signed by it. */
export async function makeCa(dir: string): Promise<{ caCert: string; cert: string; key: string }> {
  const p = (n: string): string => join(dir, n);
  await run([
    'openssl',
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    p('ca.key'),
    '-out',
    p('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=tsbuild test CA',
  ]);
  await run([
    'openssl',
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    p('server.key'),
    '-out',
    p('server.csr'),
    '-subj',
    '/CN=127.0.0.1',
  ]);
  await writeFile(
    p('ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
  );
  await run([
    'openssl',
    'x509',
    '-req',
    '-in',
    p('server.csr'),
    '-CA',
    p('ca.crt'),
    '-CAkey',
    p('ca.key'),
    '-CAcreateserial',
    '-out',
    p('server.crt'),
    '-days',
    '2',
    '-extfile',
    p('ext.cnf'),
  ]);
  return { caCert: p('ca.crt'), cert: p('server.crt'), key: p('server.key') };
}

/** startRegistry starts docker-registry as configured and waits until it answers GET /v2/. */
export async function startRegistry(t: Teardown, opts: RegistryOptions = {}): Promise<TestRegistry> {
  const dir = await makeTempDir('tsbuild-registry-');
  t.teardown(() => removeDir(dir));
  const storage = join(dir, 'data');
  let auth = '';
  let tokenServer: TokenServer | undefined;
  if (opts.htpasswd) {
    const lines = Object.entries(opts.htpasswd).map(([u, pw]) => bcryptLine(u, pw));
    await writeFile(join(dir, 'htpasswd'), `${lines.join('\n')}\n`);
    auth = `auth:\n  htpasswd:\n    realm: tsbuild-test\n    path: ${join(dir, 'htpasswd')}\n`;
  } else if (opts.token) {
    tokenServer = await startTokenServer(t, opts.token);
    auth = `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${tokenServer.service}\n    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certFile}\n`;
  }
  let tls = '';
  let caCert: string | undefined;
  if (opts.tls) {
    const ca = await makeCa(dir);
    caCert = ca.caCert;
    tls = `  tls:\n    certificate: ${ca.cert}\n    key: ${ca.key}\n`;
  }
  const logFile = join(dir, 'registry.log');
  let child: ChildProcess | undefined;
  let port = 0;
  let lastError: unknown;
  for (let attempt = 0; attempt < 3 && !child; attempt++) {
    port = await freePort();
    const config = [
      'version: 0.1',
      'log:',
      '  level: info',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      `  secret: ${randomBytes(16).toString('hex')}`,
      tls.trimEnd(),
      auth.trimEnd(),
      '',
    ]
      .filter((l) => l !== '')
      .join('\n');
    await writeFile(join(dir, 'config.yml'), `${config}\n`);
    const c = spawn(REGISTRY_BIN, ['serve', join(dir, 'config.yml')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: Buffer[] = [];
    c.stdout?.on('data', (b: Buffer) => logs.push(b));
    c.stderr?.on('data', (b: Buffer) => logs.push(b));
    c.on('exit', () => void writeFile(logFile, Buffer.concat(logs)).catch(() => {}));
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    (c as ChildProcess & { logs?: Buffer[] }).logs = logs;
    try {
      await waitReady(port, caCert, exited);
      child = c;
    } catch (err) {
      lastError = new Error(
        `docker-registry did not start: ${(err as Error).message}\n${Buffer.concat(logs).toString().slice(-2000)}`,
      );
      c.kill('SIGKILL');
      await exited;
    }
  }
  if (!child) throw lastError;
  const proc = child;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  t.teardown(stop);
  return {
    host: `127.0.0.1:${port}`,
    port,
    storage,
    ...(caCert ? { caCert } : {}),
    ...(tokenServer ? { tokenServer } : {}),
    log: async () => Buffer.concat((proc as ChildProcess & { logs?: Buffer[] }).logs ?? []).toString(),
    stop,
  };
}

/** waitReady polls GET /v2/ (bounded: 10 s) until the registry answers with anything. */
async function waitReady(port: number, caCert: string | undefined, exited: Promise<void>): Promise<void> {
  let dead = false;
  void exited.then(() => {
    dead = true;
  });
  const ca = caCert ? await readFile(caCert) : undefined;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (dead) throw new Error('the registry exited');
    const ok = await new Promise<boolean>((resolve) => {
      const mod = ca ? https : http;
      const req = mod.get({ host: '127.0.0.1', port, path: '/v2/', ...(ca ? { ca } : {}), timeout: 1000 }, (res) => {
        res.resume();
        resolve(true);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => {
        req.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('no answer within 10 s');
}

// ---------------------------------------------------------------------------------------------------------------
// The token server

export interface TokenServerOptions {
  /** users and passwords */
  users: Record<string, string>;
  /** actions per user on any repository (default pull and push) */
  actions?: Record<string, string[]>;
  /** hand out refresh tokens for offline_token=true (default true) */
  refreshTokens?: boolean;
  /** let anonymous clients pull (default false) */
  anonymousPull?: boolean;
  /** token lifetime in seconds (default 300) */
  expiresIn?: number;
}

/** TokenRequest is what the token server saw, for assertions. */
export interface TokenRequest {
  method: string;
  grant: 'basic' | 'anonymous' | 'refresh_token' | 'password' | 'refused';
  user?: string;
  scopes: string[];
  offline: boolean;
}

export interface TokenServer {
  realm: string;
  service: string;
  issuer: string;
  certFile: string;
  requests: TokenRequest[];
  stop(): Promise<void>;
}

/** startTokenServer serves /token on 127.0.0.1 (GET with Basic or anonymous; POST refresh_token and password grants). */
export async function startTokenServer(t: Teardown, opts: TokenServerOptions): Promise<TokenServer> {
  const dir = await makeTempDir('tsbuild-token-');
  t.teardown(() => removeDir(dir));
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await run([
    'openssl',
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '2',
    '-subj',
    '/CN=tsbuild test token issuer',
  ]);
  const key = createPrivateKey(await readFile(keyFile));
  const certDer = new X509Certificate(await readFile(certFile)).raw.toString('base64');
  const service = 'tsbuild-test-registry';
  const issuer = 'tsbuild-test-issuer';
  const refresh = new Map<string, string>();
  const requests: TokenRequest[] = [];
  const b64url = (b: Buffer | string): string => Buffer.from(b).toString('base64url');

  const grant = (
    user: string | undefined,
    scopes: string[],
  ): Array<{ type: string; name: string; actions: string[] }> => {
    const allowed = user ? (opts.actions?.[user] ?? ['pull', 'push']) : opts.anonymousPull ? ['pull'] : [];
    const out: Array<{ type: string; name: string; actions: string[] }> = [];
    for (const s of scopes) {
      const first = s.indexOf(':');
      const last = s.lastIndexOf(':');
      if (first < 0 || last <= first) continue;
      const type = s.slice(0, first);
      const name = s.slice(first + 1, last);
      const actions = s
        .slice(last + 1)
        .split(',')
        .filter((a) => allowed.includes(a) || (allowed.includes('push') && a === '*'));
      if (type === 'repository' && actions.length) out.push({ type, name, actions });
    }
    return out;
  };
  const jwt = (user: string | undefined, scopes: string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] };
    const claims = {
      iss: issuer,
      sub: user ?? '',
      aud: service,
      exp: now + (opts.expiresIn ?? 300),
      nbf: now - 10,
      iat: now,
      jti: randomBytes(8).toString('hex'),
      access: grant(user, scopes),
    };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    return `${input}.${b64url(sign('sha256', Buffer.from(input), key))}`;
  };
  const reply = (res: http.ServerResponse, status: number, doc: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(doc));
  };
  const checkUser = (user: string, password: string): boolean =>
    opts.users[user] !== undefined && opts.users[user] === password;

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname !== '/token') return reply(res, 404, { error: 'not found' });
    if (req.method === 'GET') {
      const scopes = url.searchParams
        .getAll('scope')
        .flatMap((s) => s.split(' '))
        .filter(Boolean);
      const offline = url.searchParams.get('offline_token') === 'true';
      const auth = req.headers.authorization;
      let user: string | undefined;
      if (auth) {
        const decoded = Buffer.from(auth.replace(/^Basic /i, ''), 'base64').toString();
        const colon = decoded.indexOf(':');
        const u = decoded.slice(0, colon);
        if (colon < 0 || !checkUser(u, decoded.slice(colon + 1))) {
          requests.push({ method: 'GET', grant: 'refused', user: u, scopes, offline });
          return reply(res, 401, { details: 'incorrect username or password' });
        }
        user = u;
      }
      requests.push({ method: 'GET', grant: user ? 'basic' : 'anonymous', ...(user ? { user } : {}), scopes, offline });
      const doc: Record<string, unknown> = {
        token: jwt(user, scopes),
        expires_in: opts.expiresIn ?? 300,
        issued_at: new Date().toISOString(),
      };
      if (user && offline && opts.refreshTokens !== false) {
        const rt = randomBytes(16).toString('hex');
        refresh.set(rt, user);
        doc.refresh_token = rt;
      }
      return reply(res, 200, doc);
    }
    if (req.method === 'POST') {
      const parts: Buffer[] = [];
      let size = 0;
      req.on('data', (b: Buffer) => {
        size += b.length;
        if (size < 65536) parts.push(b);
      });
      req.on('end', () => {
        const form = new URLSearchParams(Buffer.concat(parts).toString());
        const scopes = (form.get('scope') ?? '').split(' ').filter(Boolean);
        const offline = form.get('access_type') === 'offline';
        const grantType = form.get('grant_type');
        let user: string | undefined;
        if (grantType === 'refresh_token') user = refresh.get(form.get('refresh_token') ?? '');
        else if (grantType === 'password' && checkUser(form.get('username') ?? '', form.get('password') ?? ''))
          user = form.get('username') ?? undefined;
        if (!user) {
          requests.push({ method: 'POST', grant: 'refused', scopes, offline });
          return reply(res, 401, { error: 'invalid_grant' });
        }
        requests.push({
          method: 'POST',
          grant: grantType === 'password' ? 'password' : 'refresh_token',
          user,
          scopes,
          offline,
        });
        const doc: Record<string, unknown> = {
          access_token: jwt(user, scopes),
          expires_in: opts.expiresIn ?? 300,
          scope: scopes.join(' '),
        };
        if (grantType === 'refresh_token') doc.refresh_token = form.get('refresh_token');
        reply(res, 200, doc);
      });
      return;
    }
    reply(res, 405, { error: 'method not allowed' });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  t.teardown(stop);
  return { realm: `http://127.0.0.1:${port}/token`, service, issuer, certFile, requests, stop };
}
