// Docker-style image references: `debian` → docker.io/library/debian:latest, `localhost:5000/app:0.1`, `name@sha256:…`.
import { InvalidInputError } from '../../sys/errors.js';
import { parseDigest } from './digest.js';
import type { Digest } from './types.js';

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';

/** Reference is a parsed image name. `tag` is set unless the reference names only a digest. */
export interface Reference {
  registry: string;
  repository: string;
  tag?: string;
  digest?: Digest;
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DOMAIN =
  /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$|^\[[0-9a-fA-F:]+\](?::[0-9]+)?$/;

/** parseReference parses and normalizes a reference the way docker does; throws InvalidInputError naming the input. */
export function parseReference(input: string): Reference {
  const bad = (why: string): never => {
    throw new InvalidInputError(`invalid image name ${JSON.stringify(input)}: ${why}`);
  };
  if (!input || input.length > 4096) bad('empty or too long');
  let rest = input;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = parseDigest(rest.slice(at + 1), `digest in ${input}`);
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad(`bad tag ${JSON.stringify(tag)}`);
  }
  let registry = DEFAULT_REGISTRY;
  const firstSlash = rest.indexOf('/');
  if (firstSlash >= 0) {
    const first = rest.slice(0, firstSlash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      if (!DOMAIN.test(first)) bad(`bad registry ${JSON.stringify(first)}`);
      registry = first;
      rest = rest.slice(firstSlash + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DEFAULT_REGISTRY;
  if (!rest) bad('no repository');
  for (const c of rest.split('/')) {
    if (!COMPONENT.test(c))
      bad(`repository must be lowercase letters, digits and separators (got ${JSON.stringify(c)})`);
  }
  if (registry === DEFAULT_REGISTRY && !rest.includes('/')) rest = `library/${rest}`;
  if (!tag && !digest) tag = DEFAULT_TAG;
  const ref: Reference = { registry, repository: rest };
  if (tag) ref.tag = tag;
  if (digest) ref.digest = digest;
  return ref;
}

/** fullName is the canonical form: `docker.io/library/debian:bookworm` (plus `@digest` when present). */
export function fullName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** familiarName is the short form users type: `debian:bookworm`, `localhost:5000/app:0.1`. */
export function familiarName(ref: Reference): string {
  let repo = `${ref.registry}/${ref.repository}`;
  if (ref.registry === DEFAULT_REGISTRY) {
    repo = ref.repository.startsWith('library/') ? ref.repository.slice('library/'.length) : ref.repository;
  }
  return `${repo}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`;
}

/** repositoryName is the familiar name without tag or digest (the REPOSITORY column). */
export function repositoryName(ref: Reference): string {
  return familiarName({ registry: ref.registry, repository: ref.repository });
}
