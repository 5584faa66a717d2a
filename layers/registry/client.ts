// RegistryClient: HTTP to one registry. It picks https (or plain http, only for loopback hosts or with insecure),
// retries 429/5xx and dropped connections with back-off (honouring Retry-After), answers auth challenges,
// follows redirects of GET/HEAD (without Authorization to another host), and turns failures into one-line errors.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { TsbuildError } from '../../sys/errors.js';
import { Authenticator, type Credentials } from './auth.js';
import { isLoopback, safeUrl, TLS_MISMATCH, wireHost } from './endpoint.js';
import { drain, exchange, ExchangeError, header, readBody } from './http-exchange.js';
import { AuthError, describeErrors, parseErrorBody, RegistryError } from './registry-error.js';
import {
  backoffMs,
  DEFAULT_RETRY,
  isRetryableStatus,
  isTransientError,
  retryAfterMs,
  type RetryPolicy,
  sleep,
} from './retry.js';
import { readCaCert, secureContextFor } from './tls-trust.js';
import { transferFloor, type TransferFloor } from './transfer-floor.js';

export interface ClientOptions {
  /** the registry as references name it: `docker.io`, `127.0.0.1:5000`, `registry.example.com` */
  registry: string;
  /** allow plain HTTP and unverified TLS for this registry */
  insecure?: boolean;
  /** PEM file of an extra CA to trust */
  caCert?: string;
  credentials?: Credentials;
  /** ask the token server for a refresh token (login) */
  offlineToken?: boolean;
  retry?: Partial<RetryPolicy>;
  /** socket idle timeout in ms (default 60 s) */
  timeoutMs?: number;
  /** the slowest download accepted (default from TSBUILD_REGISTRY_MIN_RATE / _GRACE, else 16 KiB/s after 60 s) */
  transferFloor?: TransferFloor;
  /** parallel connections (default 8) */
  maxSockets?: number;
  /** told about every retry (progress can show it) */
  onRetry?: (info: { what: string; attempt: number; reason: string; delayMs: number }) => void;
  /** told about registry Warning headers */
  onWarning?: (message: string) => void;
  env?: NodeJS.ProcessEnv;
}

export type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RegistryRequest {
  method: Method;
  /** a path under the registry (`/v2/…`) or an absolute URL from a Location header */
  url: string;
  headers?: Record<string, string>;
  /** a buffer, or a function that opens the body anew for each try */
  body?: Buffer | (() => Readable);
  /** auth scopes this request needs */
  scopes?: string[];
  /** statuses that count as success; others throw (RegistryError, AuthError) */
  expect: number[];
  /** retry transient failures (default true); blob-data requests pass false and resume themselves */
  retry?: boolean;
  /** what the request does, for messages: `pushing blob sha256:… to host/repo` */
  what: string;
  signal?: AbortSignal;
}

export interface RegistryResponse {
  status: number;
  headers: IncomingHttpHeaders;
  /** the URL that answered (after redirects) */
  url: URL;
  /** the body: consume it, or call discard() */
  body: IncomingMessage;
}

const MAX_REDIRECTS = 5;
const MAX_AUTH_ROUNDS = 2;
const ERROR_BODY_LIMIT = 64 * 1024;
const TOKEN_BODY_LIMIT = 1 << 20;

export class RegistryClient {
  /** the registry as references name it */
  readonly registry: string;
  /** host:port on the wire */
  readonly host: string;
  readonly auth: Authenticator;
  private readonly insecure: boolean;
  private readonly policy: RetryPolicy;
  private readonly timeoutMs: number;
  private readonly maxSockets: number;
  private readonly caPem: string | undefined;
  /** the environment limits are read from (layers/limits.ts, transfer-floor.ts) */
  readonly env: NodeJS.ProcessEnv | undefined;
  /** the slowest download accepted */
  readonly floor: TransferFloor;
  /** connection pools, made when first needed (a verified TLS context is costly to build) */
  private readonly agents: { http?: http.Agent; https?: https.Agent; strict?: https.Agent; probe?: https.Agent } = {};
  private origin: string | undefined;
  private ready: Promise<void> | undefined;
  private readonly onRetry: ClientOptions['onRetry'];
  private readonly onWarning: ClientOptions['onWarning'];

  constructor(opts: ClientOptions) {
    this.registry = opts.registry;
    this.host = wireHost(opts.registry);
    this.insecure = opts.insecure ?? false;
    this.policy = { ...DEFAULT_RETRY, ...opts.retry };
    this.timeoutMs = opts.timeoutMs ?? 60_000;
    this.onRetry = opts.onRetry;
    this.onWarning = opts.onWarning;
    this.maxSockets = opts.maxSockets ?? 8;
    this.caPem = opts.caCert ? readCaCert(opts.caCert) : undefined;
    this.env = opts.env;
    this.floor = opts.transferFloor ?? transferFloor(opts.env);
    this.auth = new Authenticator({
      registry: opts.registry,
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
      offline: opts.offlineToken ?? false,
      fetch: (req) => this.tokenRequest(req),
    });
  }

  /** close frees the sockets kept alive. */
  close(): void {
    for (const a of Object.values(this.agents)) a.destroy();
  }

  /**
   * agent picks the connection pool: plain HTTP; TLS to the registry (unverified with insecure); TLS to other hosts
   * (redirect targets, token realms: always verified); or the probe that only asks "does it speak TLS at all".
   * One secure context serves all verified pools (a `ca` option would also go into every pool key).
   */
  private agent(kind: 'http' | 'https' | 'strict' | 'probe'): http.Agent {
    const existing = this.agents[kind];
    if (existing) return existing;
    const base = { keepAlive: kind !== 'probe', maxSockets: this.maxSockets };
    let a: http.Agent;
    if (kind === 'http') a = new http.Agent(base);
    else if (kind === 'probe' || (kind === 'https' && this.insecure))
      a = new https.Agent({ ...base, rejectUnauthorized: false });
    else a = new https.Agent({ ...base, secureContext: secureContextFor(this.caPem, this.env) });
    this.agents[kind] = a as https.Agent;
    return a;
  }

  /**
   * speaksTls tells whether a host that may also be reached over plain HTTP answers TLS at all, without building
   * the verified context: a plain-HTTP server fails the handshake. No credentials are sent; other failures
   * answer true so that the real attempt reports them.
   */
  private async speaksTls(origin: string, signal?: AbortSignal): Promise<boolean> {
    try {
      const res = await exchange({
        method: 'GET',
        url: new URL(`${origin}/v2/`),
        headers: { 'User-Agent': 'tsbuild' },
        agent: this.agent('probe'),
        timeoutMs: this.timeoutMs,
        ...(signal ? { signal } : {}),
      });
      res.destroy();
      return true;
    } catch (err) {
      return !TLS_MISMATCH.has((err as { code?: string }).code ?? '');
    }
  }

  /** plainHttpAllowed tells whether http:// may be used for a host. */
  private plainHttpAllowed(host: string): boolean {
    return this.insecure || isLoopback(host);
  }

  /**
   * ping finds the scheme (https, else http where allowed) and learns the registry's auth challenge with
   * `GET /v2/`. With credentials it also authenticates, so wrong ones fail here. Runs once per client.
   */
  ping(opts: { signal?: AbortSignal; authenticate?: boolean } = {}): Promise<void> {
    this.ready ??= this.doPing(opts).catch((err: unknown) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }

  private async doPing(opts: { signal?: AbortSignal; authenticate?: boolean }): Promise<void> {
    const schemes = this.plainHttpAllowed(this.host) ? ['https', 'http'] : ['https'];
    const what = `contacting registry ${this.registry}`;
    let res: RegistryResponse | undefined;
    schemes: for (const [i, scheme] of schemes.entries()) {
      const origin = `${scheme}://${this.host}`;
      if (i < schemes.length - 1 && !this.insecure && !(await this.speaksTls(origin, opts.signal))) continue;
      for (let attempt = 1; ; attempt++) {
        try {
          res = await this.send(
            { method: 'GET', url: `${origin}/v2/`, expect: [], what, ...(opts.signal ? { signal: opts.signal } : {}) },
            origin,
            undefined,
          );
        } catch (err) {
          const code = (err as { code?: string }).code ?? '';
          if (attempt === 1 && i < schemes.length - 1 && TLS_MISMATCH.has(code)) continue schemes;
          if (attempt < this.policy.attempts && isTransientError(err) && !opts.signal?.aborted) {
            const delayMs = backoffMs(attempt, this.policy);
            this.onRetry?.({ what, attempt, reason: (err as Error).message, delayMs });
            await sleep(delayMs, opts.signal);
            continue;
          }
          throw this.connectError(err, origin);
        }
        if (isRetryableStatus(res.status) && attempt < this.policy.attempts) {
          const delayMs = retryAfterMs(res.headers['retry-after'], this.policy) ?? backoffMs(attempt, this.policy);
          await drain(res.body);
          this.onRetry?.({ what, attempt, reason: `HTTP ${res.status}`, delayMs });
          await sleep(delayMs, opts.signal);
          continue;
        }
        this.origin = origin;
        break schemes;
      }
    }
    if (!res || !this.origin) throw new RegistryError(`registry ${this.registry}: no answer`, 0);
    await drain(res.body);
    if (res.status === 401) {
      this.auth.onChallenge(res.headers['www-authenticate'], []);
      if (opts.authenticate) {
        const ok = await this.requestPinged({
          method: 'GET',
          url: '/v2/',
          expect: [200],
          what: `logging in to ${this.registry}`,
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        await drain(ok.body);
      }
      return;
    }
    if (res.status !== 200) {
      throw new RegistryError(
        `${this.registry} does not look like a registry: GET /v2/ answered HTTP ${res.status}`,
        res.status,
        [],
        {
          hint: 'check the host and port',
        },
      );
    }
  }

  private connectError(err: unknown, origin: string): Error {
    if (err instanceof TsbuildError) return err;
    const e = err as { code?: string; message?: string };
    const code = e.code ?? '';
    if (/CERT|SELF_SIGNED|ALTNAME|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) {
      return new RegistryError(`TLS verification of ${this.registry} failed: ${e.message} (${code})`, 0, [], {
        hint: 'trust its CA with --ca-cert FILE, or use --insecure',
        code: 'E_TLS',
      });
    }
    return new RegistryError(
      `cannot reach registry ${this.registry} at ${origin}: ${e.message ?? String(err)}`,
      0,
      [],
      {
        hint: this.plainHttpAllowed(this.host)
          ? 'is it running?'
          : 'plain HTTP is only used for localhost or with --insecure',
        code: 'E_CONNECT',
      },
    );
  }

  /** url resolves a registry path or a Location against the registry origin (after ping). */
  resolve(pathOrUrl: string, base?: URL): URL {
    return new URL(pathOrUrl, base ?? `${this.origin ?? `https://${this.host}`}/`);
  }

  /**
   * request sends a request with auth, retries and redirects, and resolves when the status is in `expect`;
   * any other status throws an error naming `what`. The caller consumes or discards the body.
   */
  async request(req: RegistryRequest): Promise<RegistryResponse> {
    await this.ping(req.signal ? { signal: req.signal } : {});
    return this.requestPinged(req);
  }

  private async requestPinged(req: RegistryRequest): Promise<RegistryResponse> {
    let scopes = req.scopes ?? [];
    let res: RegistryResponse;
    for (let round = 0; ; round++) {
      const authorization = await this.auth.authorization(scopes);
      res = await this.sendWithRetries(req, authorization);
      if (res.status !== 401 || req.expect.includes(401) || round >= MAX_AUTH_ROUNDS) break;
      const next = this.auth.onChallenge(res.headers['www-authenticate'], scopes);
      if (!next) break;
      // Basic: only worth another try when credentials exist and were not sent yet. Bearer: a new token
      // (maybe with more scope) is fetched; the round limit bounds it.
      if (this.auth.scheme === 'basic' && (authorization !== undefined || !this.auth.hasCredentials)) break;
      await drain(res.body);
      scopes = next;
    }
    if (req.expect.includes(res.status)) return res;
    throw await this.failure(req, res);
  }

  /** discard throws a response body away. */
  async discard(res: RegistryResponse): Promise<void> {
    await drain(res.body);
  }

  private async sendWithRetries(req: RegistryRequest, authorization: string | undefined): Promise<RegistryResponse> {
    const retry = req.retry !== false;
    const attempts = retry ? Math.max(1, this.policy.attempts) : 1;
    for (let attempt = 1; ; attempt++) {
      let res: RegistryResponse;
      try {
        res = await this.send(req, this.origin as string, authorization);
      } catch (err) {
        if (attempt < attempts && isTransientError(err) && !req.signal?.aborted) {
          const delayMs = backoffMs(attempt, this.policy);
          this.onRetry?.({ what: req.what, attempt, reason: (err as Error).message, delayMs });
          await sleep(delayMs, req.signal);
          continue;
        }
        throw this.wrapNetwork(req, err);
      }
      if (attempt < attempts && isRetryableStatus(res.status) && !req.expect.includes(res.status)) {
        const delayMs = retryAfterMs(res.headers['retry-after'], this.policy) ?? backoffMs(attempt, this.policy);
        await drain(res.body);
        this.onRetry?.({ what: req.what, attempt, reason: `HTTP ${res.status}`, delayMs });
        await sleep(delayMs, req.signal);
        continue;
      }
      return res;
    }
  }

  private wrapNetwork(req: RegistryRequest, err: unknown): Error {
    if (err instanceof TsbuildError) return err;
    if (req.signal?.aborted) return err as Error;
    const e = err as Error & { code?: string };
    const out = new RegistryError(
      `${req.what}: ${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}`,
      0,
      [],
      { code: 'E_NETWORK' },
    );
    (out as { transient?: boolean }).transient = isTransientError(err);
    return out;
  }

  /** send does one try, following redirects of GET/HEAD. */
  private async send(
    req: RegistryRequest,
    origin: string,
    authorization: string | undefined,
  ): Promise<RegistryResponse> {
    let url = new URL(req.url, `${origin}/`);
    const follow = req.method === 'GET' || req.method === 'HEAD';
    for (let hop = 0; ; hop++) {
      this.checkScheme(url);
      const sameHost = url.host === new URL(`${origin}/`).host;
      const headers: Record<string, string> = { 'User-Agent': 'tsbuild', ...req.headers };
      if (authorization && sameHost) headers.Authorization = authorization;
      let body: Buffer | Readable | undefined;
      if (req.body !== undefined) body = Buffer.isBuffer(req.body) ? req.body : req.body();
      else if (req.method === 'POST' || req.method === 'PUT' || req.method === 'PATCH')
        headers['Content-Length'] ??= '0';
      const agent = this.agent(url.protocol === 'http:' ? 'http' : sameHost ? 'https' : 'strict');
      const res = await exchange({
        method: req.method,
        url,
        headers,
        ...(body === undefined ? {} : { body }),
        agent,
        timeoutMs: this.timeoutMs,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      this.warnings(res.headers);
      const status = res.statusCode ?? 0;
      const location = header(res.headers, 'location');
      if (follow && [301, 302, 303, 307, 308].includes(status) && location) {
        res.destroy();
        if (hop >= MAX_REDIRECTS)
          throw new RegistryError(
            `${req.what}: more than ${MAX_REDIRECTS} redirects (last to ${safeUrl(url)})`,
            status,
            [],
            { code: 'E_REDIRECT' },
          );
        url = new URL(location, url);
        continue;
      }
      return { status, headers: res.headers, url, body: res };
    }
  }

  private checkScheme(url: URL): void {
    if (url.protocol === 'https:') return;
    if (url.protocol === 'http:' && this.plainHttpAllowed(url.host)) return;
    throw new RegistryError(
      `refusing ${url.protocol}//${url.host}: plain HTTP is only used for localhost or with --insecure`,
      0,
      [],
      { code: 'E_INSECURE' },
    );
  }

  private warnings(headers: IncomingHttpHeaders): void {
    const w = headers.warning;
    if (!w || !this.onWarning) return;
    for (const v of (Array.isArray(w) ? w : [w]).slice(0, 4)) {
      const m = /^\s*299\s+\S+\s+"((?:[^"\\]|\\.){0,4096})"/.exec(v);
      if (m?.[1]) this.onWarning(`${this.registry}: ${m[1].replace(/[\x00-\x1f\x7f]/g, ' ')}`);
    }
  }

  /** failure reads an error answer (bounded) and makes the error to throw. */
  private async failure(req: RegistryRequest, res: RegistryResponse): Promise<Error> {
    let text = '';
    if (req.method !== 'HEAD') {
      try {
        text = (await readBody(res.body, ERROR_BODY_LIMIT, this.floor)).toString('utf8');
      } catch {
        text = '';
      }
    } else res.body.resume();
    const entries = parseErrorBody(text);
    const detail = describeErrors(entries, text);
    const tail = detail ? `: ${detail}` : '';
    if (res.status === 401) {
      return new AuthError(
        `${req.what}: ${this.registry} refused the credentials (HTTP 401)${tail}`,
        this.auth.hasCredentials
          ? `check them: tsbuild login ${this.registry}`
          : `log in first: tsbuild login ${this.registry}`,
      );
    }
    if (res.status === 403) return new AuthError(`${req.what}: access denied by ${this.registry} (HTTP 403)${tail}`);
    const err = new RegistryError(
      `${req.what}: ${this.registry} answered HTTP ${res.status}${tail}`,
      res.status,
      entries,
    );
    (err as { transient?: boolean }).transient = isRetryableStatus(res.status);
    return err;
  }

  /** tokenRequest sends one request to a token realm (retrying transient failures). */
  private async tokenRequest(req: {
    method: 'GET' | 'POST';
    url: URL;
    headers: Record<string, string>;
    body?: Buffer;
  }): Promise<{ status: number; body: Buffer }> {
    this.checkScheme(req.url);
    const sameHostname = req.url.hostname === new URL(`https://${this.host}/`).hostname;
    const agent = this.agent(req.url.protocol === 'http:' ? 'http' : sameHostname ? 'https' : 'strict');
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await exchange({
          method: req.method,
          url: req.url,
          headers: {
            'User-Agent': 'tsbuild',
            ...req.headers,
            ...(req.body ? { 'Content-Length': String(req.body.length) } : {}),
          },
          ...(req.body ? { body: req.body } : {}),
          agent,
          timeoutMs: this.timeoutMs,
        });
        const status = res.statusCode ?? 0;
        if (isRetryableStatus(status) && attempt < this.policy.attempts) {
          const delayMs = retryAfterMs(res.headers['retry-after'], this.policy) ?? backoffMs(attempt, this.policy);
          await drain(res);
          await sleep(delayMs);
          continue;
        }
        const body =
          status === 200 ? await readBody(res, TOKEN_BODY_LIMIT, this.floor) : (await drain(res), Buffer.alloc(0));
        return { status, body };
      } catch (err) {
        if (attempt < this.policy.attempts && isTransientError(err)) {
          await sleep(backoffMs(attempt, this.policy));
          continue;
        }
        if (err instanceof ExchangeError && err.code === 'E_TOO_LARGE')
          throw new AuthError(`the token server of ${this.registry} answered more than ${TOKEN_BODY_LIMIT} bytes`);
        throw new AuthError(
          `cannot get a token for ${this.registry} from ${req.url.origin}: ${(err as Error).message}`,
        );
      }
    }
  }
}
