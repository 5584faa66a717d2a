// Which certificate authorities a registry connection trusts: Node's bundled roots, the system bundle, and --ca-cert.
import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { InvalidInputError } from '../errors.js';

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];

let systemCache: string[] | undefined;

/** systemCAs reads the first system CA bundle found ($SSL_CERT_FILE first); empty when there is none. */
function systemCAs(env: NodeJS.ProcessEnv): string[] {
  if (systemCache) return systemCache;
  const candidates = env.SSL_CERT_FILE ? [env.SSL_CERT_FILE, ...SYSTEM_BUNDLES] : SYSTEM_BUNDLES;
  for (const path of candidates) {
    try {
      const pem = readFileSync(path, 'utf8');
      if (pem.includes('BEGIN CERTIFICATE')) {
        systemCache = [pem];
        return systemCache;
      }
    } catch {
      // try the next one
    }
  }
  systemCache = [];
  return systemCache;
}

/**
 * trustedCAs returns the PEM list for an https Agent's `ca`: Node's roots, the system bundle and the PEM file given
 * with --ca-cert. Throws InvalidInputError when that file cannot be read or holds no certificate.
 */
export function trustedCAs(caCertPath?: string, env: NodeJS.ProcessEnv = process.env): string[] {
  const list = [...rootCertificates, ...systemCAs(env)];
  if (caCertPath) {
    let pem: string;
    try {
      pem = readFileSync(caCertPath, 'utf8');
    } catch (err) {
      throw new InvalidInputError(`--ca-cert ${caCertPath}: ${(err as Error).message}`);
    }
    if (!pem.includes('BEGIN CERTIFICATE')) throw new InvalidInputError(`--ca-cert ${caCertPath}: no PEM certificate in the file`);
    list.push(pem);
  }
  return list;
}
