// Which certificate authorities a registry connection trusts: Node's bundled roots, the system bundle, and --ca-cert.
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { InvalidInputError } from '../../sys/errors.js';

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];
const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** systemCAs returns the certificates of the first system CA bundle found ($SSL_CERT_FILE first) that Node does not bundle. */
function systemCAs(env: NodeJS.ProcessEnv): string[] {
  const candidates = env.SSL_CERT_FILE ? [env.SSL_CERT_FILE, ...SYSTEM_BUNDLES] : SYSTEM_BUNDLES;
  const bundled = new Set(rootCertificates.map(normalize));
  for (const path of candidates) {
    let pem: string;
    try {
      pem = readFileSync(path, 'utf8');
    } catch {
      continue;
    }
    const blocks = pem.match(PEM_BLOCK) ?? [];
    if (blocks.length) return blocks.filter((b) => !bundled.has(normalize(b)));
  }
  return [];
}

function normalize(pem: string): string {
  return pem.replace(/\s+/g, '');
}

/** readCaCert reads the PEM file given with --ca-cert; InvalidInputError when it cannot be read or holds no certificate. */
export function readCaCert(path: string): string {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new InvalidInputError(`--ca-cert ${path}: ${(err as Error).message}`);
  }
  if (!pem.includes('BEGIN CERTIFICATE'))
    throw new InvalidInputError(`--ca-cert ${path}: no PEM certificate in the file`);
  return pem;
}

/** trustedCAs returns the PEM list for a TLS context: Node's roots, the system bundle's others, and `extraPem`. */
export function trustedCAs(extraPem?: string, env: NodeJS.ProcessEnv = process.env): string[] {
  return [...rootCertificates, ...systemCAs(env), ...(extraPem ? [extraPem] : [])];
}

const contexts = new Map<string, SecureContext>();

/**
 * secureContextFor builds, once per process and extra CA, the TLS context trusting Node's roots, the system's and
 * the extra PEM. Building it parses a few hundred certificates (~0.1 s), so callers ask for it only when they
 * make a verified TLS connection.
 */
export function secureContextFor(extraPem: string | undefined, env: NodeJS.ProcessEnv = process.env): SecureContext {
  const key = extraPem ?? '';
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({ ca: trustedCAs(extraPem, env) });
    contexts.set(key, ctx);
  }
  return ctx;
}
