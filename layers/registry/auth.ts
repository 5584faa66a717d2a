// Registry authentication: WWW-Authenticate challenges, Basic, and Bearer tokens from the realm (GET with
// service+scope, or the OAuth2 POST refresh when an identity/refresh token is held), cached per scope set.
import { InvalidInputError } from '../../sys/errors.js';
import { AuthError } from './registry-error.js';

/** Credentials for one registry. An identity token (a refresh token) replaces the password for Bearer realms. */
export interface Credentials {
  username?: string;
  password?: string;
  identityToken?: string;
}

/** Challenge is one WWW-Authenticate challenge: a lower-cased scheme and its parameters (names lower-cased). */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/**
 * parseChallenges parses WWW-Authenticate values (RFC 7235): several challenges per header, quoted or token
 * parameter values, backslash escapes. Garbage yields fewer challenges, never an exception.
 */
export function parseChallenges(headerValue: string | string[] | undefined): Challenge[] {
  const values = headerValue === undefined ? [] : Array.isArray(headerValue) ? headerValue : [headerValue];
  const out: Challenge[] = [];
  for (const value of values) {
    const s = value.slice(0, 8192);
    let i = 0;
    let current: Challenge | undefined;
    const skipWs = (): void => {
      while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
    };
    while (i < s.length) {
      skipWs();
      if (s[i] === ',') {
        i++;
        continue;
      }
      const m = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(s.slice(i));
      if (!m) break;
      const word = m[0];
      i += word.length;
      skipWs();
      if (s[i] === '=' && current) {
        // a parameter of the current challenge (or a token68 ending in '=': ignored)
        i++;
        skipWs();
        let val = '';
        if (s[i] === '"') {
          i++;
          while (i < s.length && s[i] !== '"') {
            if (s[i] === '\\' && i + 1 < s.length) i++;
            val += s[i];
            i++;
          }
          i++;
        } else {
          const t = /^[^,\s]*/.exec(s.slice(i));
          val = t ? t[0] : '';
          i += val.length;
        }
        current.params[word.toLowerCase()] = val;
      } else {
        current = { scheme: word.toLowerCase(), params: {} };
        out.push(current);
      }
    }
  }
  return out;
}

/** parseScopes splits a challenge's scope parameter (space separated) into scope strings. */
export function parseScopes(scope: string | undefined): string[] {
  return (scope ?? '').split(' ').filter((s) => /^[^\s:]+:\S+:[^\s:]+$/.test(s));
}

/** repositoryScope is the scope string for actions on one repository. */
export function repositoryScope(repository: string, actions: string[]): string {
  return `repository:${repository}:${actions.join(',')}`;
}

/** mergeScopes joins scope lists, merging the actions of the same resource; the result is sorted. */
export function mergeScopes(...lists: string[][]): string[] {
  const byResource = new Map<string, Set<string>>();
  for (const list of lists) {
    for (const s of list) {
      const last = s.lastIndexOf(':');
      if (last <= 0) continue;
      const resource = s.slice(0, last);
      const set = byResource.get(resource) ?? new Set<string>();
      for (const a of s.slice(last + 1).split(',')) if (a) set.add(a);
      byResource.set(resource, set);
    }
  }
  return [...byResource.entries()].map(([r, acts]) => `${r}:${[...acts].sort().join(',')}`).sort();
}

/** TokenReply is what a token endpoint answers. */
export interface TokenReply {
  status: number;
  body: Buffer;
}

/** TokenFetch sends one request to the token realm (TLS, retries and limits are the caller's). */
export type TokenFetch = (req: {
  method: 'GET' | 'POST';
  url: URL;
  headers: Record<string, string>;
  body?: Buffer;
}) => Promise<TokenReply>;

interface CachedToken {
  token: string;
  expiresAt: number;
}

const CLIENT_ID = 'tsbuild';
const TOKEN_RE = /^[\x21-\x7e]{1,16384}$/;

export interface AuthenticatorOptions {
  registry: string;
  credentials?: Credentials;
  fetch: TokenFetch;
  /** ask the token server for a refresh token (login does, to save it as an identity token) */
  offline?: boolean;
  now?: () => number;
}

/**
 * Authenticator answers "which Authorization header for these scopes?" once a registry has challenged.
 * Tokens are cached per scope set until shortly before they expire; concurrent requests share one token fetch.
 */
export class Authenticator {
  private challenge: Challenge | undefined;
  private readonly tokens = new Map<string, Promise<CachedToken>>();
  private readonly registry: string;
  private readonly credentials: Credentials | undefined;
  private readonly fetchToken: TokenFetch;
  private readonly offline: boolean;
  private readonly now: () => number;
  /** refreshToken is the refresh token the realm handed out (offline), or the saved identity token. */
  refreshToken: string | undefined;

  constructor(opts: AuthenticatorOptions) {
    this.registry = opts.registry;
    this.credentials = opts.credentials;
    this.fetchToken = opts.fetch;
    this.offline = opts.offline ?? false;
    this.now = opts.now ?? Date.now;
    this.refreshToken = opts.credentials?.identityToken || undefined;
  }

  /** scheme is the challenged scheme (`basic`, `bearer`) or undefined while the registry has not asked. */
  get scheme(): string | undefined {
    return this.challenge?.scheme;
  }

  /**
   * onChallenge records a 401's WWW-Authenticate header and drops the token used for `scopes`. It returns the
   * scopes to retry with (the request's plus what an insufficient_scope challenge names), or undefined when a
   * retry cannot help (no usable challenge).
   */
  onChallenge(headerValue: string | string[] | undefined, scopes: string[]): string[] | undefined {
    const challenges = parseChallenges(headerValue);
    const chosen =
      challenges.find((c) => c.scheme === 'bearer' && c.params.realm) ?? challenges.find((c) => c.scheme === 'basic');
    if (!chosen) return undefined;
    this.challenge = chosen;
    this.tokens.delete(scopeKey(scopes));
    return chosen.scheme === 'bearer' ? mergeScopes(scopes, parseScopes(chosen.params.scope)) : scopes;
  }

  /** authorization returns the Authorization header value for a request needing `scopes`, or undefined (anonymous). */
  async authorization(scopes: string[]): Promise<string | undefined> {
    const c = this.challenge;
    if (!c) return undefined;
    if (c.scheme === 'basic') {
      const cr = this.credentials;
      if (!cr?.username || cr.password === undefined) return undefined;
      return `Basic ${Buffer.from(`${cr.username}:${cr.password}`).toString('base64')}`;
    }
    const key = scopeKey(scopes);
    let pending = this.tokens.get(key);
    if (pending) {
      const cached = await pending.catch(() => undefined);
      if (cached && cached.expiresAt > this.now()) return `Bearer ${cached.token}`;
      if (this.tokens.get(key) === pending) this.tokens.delete(key);
      pending = undefined;
    }
    pending = this.requestToken(c, scopes);
    this.tokens.set(key, pending);
    pending.catch(() => {
      if (this.tokens.get(key) === pending) this.tokens.delete(key);
    });
    return `Bearer ${(await pending).token}`;
  }

  /** hasCredentials tells whether a username/password or identity token is held. */
  get hasCredentials(): boolean {
    return !!(this.credentials?.username || this.refreshToken);
  }

  private async requestToken(c: Challenge, scopes: string[]): Promise<CachedToken> {
    let realm: URL;
    try {
      realm = new URL(c.params.realm ?? '');
    } catch {
      throw new AuthError(`registry ${this.registry} named an invalid token realm ${JSON.stringify(c.params.realm)}`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new AuthError(
        `registry ${this.registry} named a token realm with an unsupported scheme: ${realm.protocol}`,
      );
    }
    const service = c.params.service;
    if (this.refreshToken) {
      const reply = await this.postRefresh(realm, service, scopes, this.refreshToken);
      if (reply) return reply;
    }
    return this.getToken(realm, service, scopes);
  }

  /** postRefresh does the OAuth2 refresh-token grant; undefined when the realm does not support POST. */
  private async postRefresh(
    realm: URL,
    service: string | undefined,
    scopes: string[],
    refreshToken: string,
  ): Promise<CachedToken | undefined> {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: refreshToken,
      client_id: CLIENT_ID,
    });
    if (service) form.set('service', service);
    if (scopes.length) form.set('scope', scopes.join(' '));
    if (this.offline) form.set('access_type', 'offline');
    const reply = await this.fetchToken({
      method: 'POST',
      url: realm,
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: Buffer.from(form.toString()),
    });
    if (reply.status === 404 || reply.status === 405) {
      if (this.credentials?.username && this.credentials.password !== undefined) return undefined;
      throw new AuthError(
        `the token server of ${this.registry} (${realm.origin}) does not accept identity tokens`,
        `log in again: tsbuild login ${this.registry}`,
      );
    }
    if (reply.status === 400 || reply.status === 401 || reply.status === 403) {
      throw new AuthError(
        `the token server of ${this.registry} refused the saved identity token (HTTP ${reply.status})`,
        `log in again: tsbuild login ${this.registry}`,
      );
    }
    return this.parseReply(reply, realm);
  }

  private async getToken(realm: URL, service: string | undefined, scopes: string[]): Promise<CachedToken> {
    const url = new URL(realm.href);
    if (service) url.searchParams.set('service', service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = {};
    const cr = this.credentials;
    if (cr?.username && cr.password !== undefined) {
      headers.Authorization = `Basic ${Buffer.from(`${cr.username}:${cr.password}`).toString('base64')}`;
      url.searchParams.set('account', cr.username);
      if (this.offline) {
        url.searchParams.set('offline_token', 'true');
        url.searchParams.set('client_id', CLIENT_ID);
      }
    }
    const reply = await this.fetchToken({ method: 'GET', url, headers });
    if (reply.status === 401 || reply.status === 403) {
      throw headers.Authorization
        ? new AuthError(
            `the token server of ${this.registry} refused the username or password (HTTP ${reply.status})`,
            `check them, then: tsbuild login ${this.registry}`,
          )
        : new AuthError(
            `registry ${this.registry} needs credentials (anonymous access refused)`,
            `log in first: tsbuild login ${this.registry}`,
          );
    }
    return this.parseReply(reply, realm);
  }

  private parseReply(reply: TokenReply, realm: URL): CachedToken {
    if (reply.status !== 200)
      throw new AuthError(`the token server of ${this.registry} (${realm.origin}) answered HTTP ${reply.status}`);
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown; refresh_token?: unknown };
    try {
      doc = JSON.parse(reply.body.toString('utf8')) as typeof doc;
    } catch {
      throw new AuthError(`the token server of ${this.registry} answered something that is not JSON`);
    }
    const token = typeof doc?.token === 'string' && doc.token ? doc.token : doc?.access_token;
    if (typeof token !== 'string' || !TOKEN_RE.test(token))
      throw new AuthError(`the token server of ${this.registry} answered without a usable token`);
    if (typeof doc.refresh_token === 'string' && TOKEN_RE.test(doc.refresh_token))
      this.refreshToken = doc.refresh_token;
    let seconds = typeof doc.expires_in === 'number' && Number.isFinite(doc.expires_in) ? doc.expires_in : 60;
    seconds = Math.min(Math.max(seconds, 60), 86_400);
    // renew a little early so a token does not expire in flight
    return { token, expiresAt: this.now() + seconds * 1000 - Math.min(10_000, (seconds * 1000) / 4) };
  }
}

function scopeKey(scopes: string[]): string {
  return [...new Set(scopes)].sort().join(' ');
}

/** basicCredentials decodes a config.json `auth` field (base64 of user:password). */
export function decodeAuthField(auth: string, where: string): Credentials {
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon < 0) throw new InvalidInputError(`${where}: the auth field is not base64 of user:password`);
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}
