// Manifests over the wire: GET with an Accept listing the four manifest/index types, verified against the digest
// asked for (or the Docker-Content-Digest of a tag), bounded in size; PUT with the document's own media type.
import type { IncomingHttpHeaders } from 'node:http';
import { sha256 } from '../model/digest.js';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { type Digest, type Index, type Manifest, MediaType } from '../model/types.js';
import type { RegistryClient } from './client.js';
import { header, readBody } from './http-exchange.js';
import { tooSlow, TransferClock } from './transfer-floor.js';

/** MANIFEST_TYPES are the manifest and index media types tsbuild reads (Docker schema1 is refused). */
export const MANIFEST_TYPES = [
  MediaType.OciIndex,
  MediaType.OciManifest,
  MediaType.DockerManifestList,
  MediaType.DockerManifest,
] as const;
export const MANIFEST_ACCEPT = MANIFEST_TYPES.join(', ');
/** MANIFEST_LIMIT: larger manifests are refused (the spec asks registries to take at least 4 MiB). */
export const MANIFEST_LIMIT = 4 << 20;

export interface FetchedManifest {
  bytes: Buffer;
  digest: Digest;
  mediaType: string;
  /** the parsed document: a manifest or an index, per mediaType */
  doc: Manifest | Index;
}

export interface ManifestRequest {
  client: RegistryClient;
  repository: string;
  /** a tag or a digest */
  reference: string;
  scopes: string[];
  /** the size a descriptor promised */
  expectedSize?: number;
  signal?: AbortSignal;
}

/** fetchManifest GETs and checks a manifest or index. Throws on a digest mismatch, a bad document or an unknown type. */
export async function fetchManifest(req: ManifestRequest): Promise<FetchedManifest> {
  const { client, repository, reference } = req;
  const where = `${client.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`;
  const what = `pulling manifest ${where}`;
  const limit = Math.min(MANIFEST_LIMIT, req.expectedSize ?? MANIFEST_LIMIT);
  if (req.expectedSize !== undefined && req.expectedSize > MANIFEST_LIMIT)
    throw new TsbuildError(
      'E_MANIFEST_INVALID',
      `${what}: its descriptor declares ${req.expectedSize} bytes, more than the ${MANIFEST_LIMIT}-byte limit of manifests`,
    );
  // the transfer floor covers the request and the body: a registry that drips its answer fails in bounded time
  const late = new AbortController();
  const clock = new TransferClock(client.floor, (err) => late.abort(err));
  const signal = req.signal ? AbortSignal.any([req.signal, late.signal]) : late.signal;
  let bytes: Buffer;
  let headers: IncomingHttpHeaders;
  try {
    const res = await client.request({
      method: 'GET',
      url: `/v2/${repository}/manifests/${reference}`,
      headers: { Accept: MANIFEST_ACCEPT },
      scopes: req.scopes,
      expect: [200],
      what,
      signal,
    });
    late.signal.addEventListener('abort', () => res.body.destroy(late.signal.reason as Error), { once: true });
    headers = res.headers;
    bytes = await readBody(res.body, limit);
  } catch (err) {
    if (clock.late) throw tooSlow(what, late.signal.reason);
    if ((err as { code?: string }).code === 'E_TOO_LARGE') {
      throw new TsbuildError('E_MANIFEST_INVALID', `${what}: the manifest is larger than ${limit} bytes`);
    }
    throw err;
  } finally {
    clock.stop();
  }
  const digest = sha256(bytes);
  if (reference.startsWith('sha256:') && digest !== reference) {
    throw new TsbuildError('E_DIGEST_MISMATCH', `${what}: the registry served a manifest that hashes to ${digest}`, {
      hint: 'the registry (or something between it and you) corrupted the data; nothing was stored',
    });
  }
  const claimed = header(headers, 'docker-content-digest');
  if (claimed && /^sha256:/.test(claimed) && claimed !== digest) {
    throw new TsbuildError(
      'E_DIGEST_MISMATCH',
      `${what}: the registry says the manifest is ${claimed} but it hashes to ${digest}`,
    );
  }
  if (req.expectedSize !== undefined && bytes.length !== req.expectedSize) {
    throw new TsbuildError('E_SIZE_MISMATCH', `${what}: ${bytes.length} bytes, the index said ${req.expectedSize}`);
  }
  let doc: Omit<Manifest | Index, 'schemaVersion' | 'mediaType'> & { mediaType?: unknown; schemaVersion?: unknown };
  try {
    doc = JSON.parse(bytes.toString('utf8')) as typeof doc;
  } catch (err) {
    throw new TsbuildError('E_MANIFEST_INVALID', `${what}: not valid JSON (${(err as Error).message})`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new TsbuildError('E_MANIFEST_INVALID', `${what}: not a JSON object`);
  if (doc.schemaVersion === 1)
    throw new InvalidInputError(
      `${what}: Docker schema 1 manifests are not supported`,
      'push the image again with a current tool',
    );
  const contentType = (header(headers, 'content-type') ?? '').split(';')[0]?.trim() ?? '';
  const mediaType = typeof doc.mediaType === 'string' && doc.mediaType ? doc.mediaType : contentType || guessType(doc);
  if (!(MANIFEST_TYPES as readonly string[]).includes(mediaType)) {
    throw new InvalidInputError(`${what}: unsupported manifest type ${JSON.stringify(mediaType.slice(0, 100))}`);
  }
  if (doc.schemaVersion !== 2) throw new TsbuildError('E_MANIFEST_INVALID', `${what}: schemaVersion must be 2`);
  return { bytes, digest, mediaType, doc: doc as Manifest | Index };
}

/** guessType tells an index from a manifest when neither the body nor Content-Type says. */
function guessType(doc: object): string {
  return 'manifests' in doc ? MediaType.OciIndex : MediaType.OciManifest;
}

/** putManifest PUTs exact bytes under a tag or digest with their media type as Content-Type; returns the digest. */
export async function putManifest(opts: {
  client: RegistryClient;
  repository: string;
  reference: string;
  bytes: Buffer;
  mediaType: string;
  scopes: string[];
  signal?: AbortSignal;
  onWarning?: (message: string) => void;
}): Promise<Digest> {
  const { client, repository, reference } = opts;
  const digest = sha256(opts.bytes);
  const res = await client.request({
    method: 'PUT',
    url: `/v2/${repository}/manifests/${reference}`,
    headers: { 'Content-Type': opts.mediaType, 'Content-Length': String(opts.bytes.length) },
    body: opts.bytes,
    scopes: opts.scopes,
    expect: [200, 201, 202, 204],
    what: `pushing manifest ${digest} to ${client.registry}/${repository}${reference.startsWith('sha256:') ? '@' : ':'}${reference}`,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  await client.discard(res);
  const stored = header(res.headers, 'docker-content-digest');
  if (stored && stored !== digest)
    opts.onWarning?.(`${client.registry}/${repository} reports manifest digest ${stored}, tsbuild sent ${digest}`);
  return digest;
}
