// Registry endpoints: what a user types (`docker.io`, `localhost:5000`, `https://r.example/`) → the host we talk to,
// the key credentials are saved under, and whether plain HTTP is allowed.
import { isIP } from 'node:net';
import { InvalidInputError } from '../../sys/errors.js';
import { DEFAULT_REGISTRY } from '../model/names.js';

/** DOCKER_HUB_HOST is where `docker.io` lives on the wire. */
export const DOCKER_HUB_HOST = 'registry-1.docker.io';
/** DOCKER_HUB_CREDENTIAL_KEY is the config.json key docker uses for Docker Hub. */
export const DOCKER_HUB_CREDENTIAL_KEY = 'https://index.docker.io/v1/';

const HOST_RE =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]{1,5})?$|^\[[0-9a-fA-F:.]+\](?::[0-9]{1,5})?$/;

/**
 * normalizeRegistry turns what a user typed for `login`/`logout` into a registry name as image references carry it:
 * the scheme and any path are dropped, and Docker Hub's aliases become `docker.io`. Throws InvalidInputError.
 */
export function normalizeRegistry(input: string): string {
  let s = input.trim();
  s = s.replace(/^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//, '');
  s = s.replace(/\/.*$/, '');
  if (!s || !HOST_RE.test(s))
    throw new InvalidInputError(
      `invalid registry ${JSON.stringify(input)}`,
      'give a host name, optionally with a port: registry.example.com:5000',
    );
  s = s.toLowerCase();
  if (s === 'index.docker.io' || s === DOCKER_HUB_HOST || s === DEFAULT_REGISTRY) return DEFAULT_REGISTRY;
  return s;
}

/** wireHost is the host:port requests go to (`docker.io` → `registry-1.docker.io`). */
export function wireHost(registry: string): string {
  return registry === DEFAULT_REGISTRY ? DOCKER_HUB_HOST : registry;
}

/** credentialKey is the key under which docker's config.json holds a registry's credentials. */
export function credentialKey(registry: string): string {
  return registry === DEFAULT_REGISTRY ? DOCKER_HUB_CREDENTIAL_KEY : registry;
}

/** credentialKeyMatches tells whether a config.json key (maybe a URL) names the registry. */
export function credentialKeyMatches(key: string, registry: string): boolean {
  try {
    return normalizeRegistry(key) === registry;
  } catch {
    return false;
  }
}

/** hostnameOf strips the port (and IPv6 brackets) from host[:port]. */
export function hostnameOf(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon >= 0 && !host.slice(0, colon).includes(':') ? host.slice(0, colon) : host;
}

/** isLoopback tells whether a host (with or without port) is localhost, 127.0.0.0/8 or ::1: plain HTTP is allowed there. */
export function isLoopback(host: string): boolean {
  const name = hostnameOf(host).toLowerCase();
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 4) return name.startsWith('127.');
  if (isIP(name) === 6) return name === '::1' || name === '0:0:0:0:0:0:0:1';
  return false;
}

/** safeUrl prints a URL without its query (which may carry signed credentials). */
export function safeUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

/** TLS_MISMATCH are errors of an https attempt to a server that speaks plain HTTP. */
export const TLS_MISMATCH = new Set([
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'EPROTO',
  'ERR_SSL_PACKET_LENGTH_TOO_LONG',
  'ERR_SSL_HTTP_REQUEST',
  'ECONNRESET',
]);
