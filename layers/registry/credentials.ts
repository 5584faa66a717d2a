// Saved registry credentials, docker-compatible: `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`) with
// `auths` (base64 user:password, or an identity token), `credHelpers` per registry and a default `credsStore`,
// the helpers being `docker-credential-<name> get|store|erase` programs.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import { run } from '../../sys/exec.js';
import { decodeAuthField, type Credentials } from './auth.js';
import { credentialKey, credentialKeyMatches } from './endpoint.js';

/** AuthEntry is one `auths` member of config.json. */
export interface AuthEntry {
  auth?: string;
  identitytoken?: string;
  username?: string;
  password?: string;
  [key: string]: unknown;
}

/** DockerConfig is the part of config.json tsbuild reads and writes; other members are kept as they are. */
export interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [key: string]: unknown;
}

export interface CredentialOptions {
  env?: NodeJS.ProcessEnv;
  /**
   * getCredentials only: with it, a config.json that is not valid JSON is skipped with this warning and the access
   * goes on anonymously (docker does so); without it, it is an InvalidInputError naming the file.
   */
  onWarning?: (message: string) => void;
}

const CONFIG_LIMIT = 4 << 20;
const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
/** IDENTITY_TOKEN_USER is what credential helpers use as Username for an identity token. */
const IDENTITY_TOKEN_USER = '<token>';

/** dockerConfigPath is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function dockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DOCKER_CONFIG) return join(env.DOCKER_CONFIG, 'config.json');
  return join(env.HOME || '/root', '.docker', 'config.json');
}

/** readDockerConfig reads config.json; a missing file is an empty config, a malformed one an InvalidInputError. */
export async function readDockerConfig(path: string): Promise<DockerConfig> {
  let text: string;
  try {
    const buf = await readFile(path);
    if (buf.length > CONFIG_LIMIT) throw new InvalidInputError(`${path} is larger than ${CONFIG_LIMIT} bytes`);
    text = buf.toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw err;
  }
  if (!text.trim()) return {};
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InvalidInputError(`${path} is not valid JSON: ${(err as Error).message}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc))
    throw new InvalidInputError(`${path} is not a JSON object`);
  return doc as DockerConfig;
}

/** writeDockerConfig replaces config.json atomically, readable by its owner only. */
export async function writeDockerConfig(path: string, config: DockerConfig): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new TsbuildError('E_CONFIG', `writing ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** helperFor names the credential helper config.json assigns to a registry, if any. */
function helperFor(config: DockerConfig, registry: string): string | undefined {
  for (const [key, name] of Object.entries(config.credHelpers ?? {})) {
    if (typeof name === 'string' && credentialKeyMatches(key, registry)) return checkedHelper(name);
  }
  return typeof config.credsStore === 'string' && config.credsStore ? checkedHelper(config.credsStore) : undefined;
}

function checkedHelper(name: string): string {
  if (!HELPER_NAME.test(name))
    throw new InvalidInputError(`credential helper name ${JSON.stringify(name)} is not valid`);
  return name;
}

/** authKeys lists the `auths` keys that name the registry, the canonical key first. */
function authKeys(config: DockerConfig, registry: string): string[] {
  const want = credentialKey(registry);
  const keys = Object.keys(config.auths ?? {}).filter((k) => k === want || credentialKeyMatches(k, registry));
  return keys.sort((a, b) => Number(b === want) - Number(a === want));
}

/**
 * getCredentials finds credentials for a registry: its credHelper, else the credsStore, else `auths`.
 * Returns undefined when there are none (anonymous access), and when config.json is not valid JSON and the caller
 * takes warnings (`onWarning`).
 */
export async function getCredentials(registry: string, opts: CredentialOptions = {}): Promise<Credentials | undefined> {
  const env = opts.env ?? process.env;
  const path = dockerConfigPath(env);
  let config: DockerConfig;
  try {
    config = await readDockerConfig(path);
  } catch (err) {
    // as docker does: a config.json that cannot be read is skipped with a warning, and the pull goes on anonymously
    if (!(err instanceof InvalidInputError) || !opts.onWarning) throw err;
    opts.onWarning(`ignoring ${err.message}; going on without saved credentials`);
    return undefined;
  }
  const helper = helperFor(config, registry);
  if (helper) {
    const fromHelper = await helperGet(helper, registry, env);
    if (fromHelper) return fromHelper;
  }
  for (const key of authKeys(config, registry)) {
    const entry = config.auths?.[key];
    if (!entry || typeof entry !== 'object') continue;
    const creds: Credentials = {};
    if (typeof entry.auth === 'string' && entry.auth)
      Object.assign(creds, decodeAuthField(entry.auth, `${path} auths[${JSON.stringify(key)}]`));
    else if (typeof entry.username === 'string') {
      creds.username = entry.username;
      if (typeof entry.password === 'string') creds.password = entry.password;
    }
    if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
      creds.identityToken = entry.identitytoken;
      if (creds.password === '') delete creds.password;
    }
    if (creds.username || creds.identityToken) return creds;
  }
  return undefined;
}

/**
 * saveCredentials stores credentials the way docker does: through the registry's helper when one is configured
 * (config.json then only gets an empty `auths` entry), else base64 in `auths`. Returns where they went.
 */
export async function saveCredentials(
  registry: string,
  creds: Credentials,
  opts: CredentialOptions = {},
): Promise<{ path: string; helper?: string }> {
  const env = opts.env ?? process.env;
  const path = dockerConfigPath(env);
  const config = await readDockerConfig(path);
  const key = credentialKey(registry);
  const helper = helperFor(config, registry);
  const auths: Record<string, AuthEntry> = { ...(config.auths ?? {}) };
  for (const k of authKeys(config, registry)) delete auths[k];
  if (helper) {
    const secret = creds.identityToken ?? creds.password ?? '';
    const username = creds.identityToken ? IDENTITY_TOKEN_USER : (creds.username ?? '');
    await runHelper(helper, 'store', JSON.stringify({ ServerURL: key, Username: username, Secret: secret }), env);
    auths[key] = {};
  } else {
    const entry: AuthEntry = {};
    if (creds.identityToken) {
      entry.auth = Buffer.from(`${creds.username ?? ''}:`).toString('base64');
      entry.identitytoken = creds.identityToken;
    } else {
      entry.auth = Buffer.from(`${creds.username ?? ''}:${creds.password ?? ''}`).toString('base64');
    }
    auths[key] = entry;
  }
  await writeDockerConfig(path, { ...config, auths });
  return helper ? { path, helper } : { path };
}

/** eraseCredentials removes a registry's credentials (from its helper and from `auths`); false when there were none. */
export async function eraseCredentials(registry: string, opts: CredentialOptions = {}): Promise<boolean> {
  const env = opts.env ?? process.env;
  const path = dockerConfigPath(env);
  const config = await readDockerConfig(path);
  let removed = false;
  const helper = helperFor(config, registry);
  if (helper) {
    const r = await runHelper(helper, 'erase', credentialKey(registry), env, true);
    removed = r.ok;
  }
  const keys = authKeys(config, registry);
  if (keys.length) {
    const auths = { ...(config.auths ?? {}) };
    for (const k of keys) delete auths[k];
    await writeDockerConfig(path, { ...config, auths });
    removed = true;
  }
  return removed;
}

async function helperGet(helper: string, registry: string, env: NodeJS.ProcessEnv): Promise<Credentials | undefined> {
  const r = await runHelper(helper, 'get', credentialKey(registry), env, true);
  if (!r.ok) {
    if (/not found|no credentials/i.test(r.stdout + r.stderr)) return undefined;
    throw new TsbuildError(
      'E_CREDENTIALS',
      `docker-credential-${helper} get failed: ${(r.stdout || r.stderr).trim().slice(0, 200)}`,
    );
  }
  let doc: { Username?: unknown; Secret?: unknown };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch {
    throw new TsbuildError('E_CREDENTIALS', `docker-credential-${helper} get printed something that is not JSON`);
  }
  const username = typeof doc.Username === 'string' ? doc.Username : '';
  const secret = typeof doc.Secret === 'string' ? doc.Secret : '';
  if (!secret) return undefined;
  return username === IDENTITY_TOKEN_USER ? { identityToken: secret } : { username, password: secret };
}

async function runHelper(
  helper: string,
  verb: 'get' | 'store' | 'erase',
  input: string,
  env: NodeJS.ProcessEnv,
  tolerate = false,
): Promise<{ ok: boolean; stdout: string; stderr: string }> {
  const argv = [`docker-credential-${helper}`, verb];
  try {
    const r = await run(argv, { input, env, okCodes: tolerate ? [1] : [] });
    return { ok: r.code === 0, stdout: r.stdout, stderr: r.stderr };
  } catch (err) {
    if (err instanceof TsbuildError && err.code === 'E_MISSING_TOOLS') {
      throw new TsbuildError('E_CREDENTIALS', `credential helper docker-credential-${helper} is not installed`, {
        hint: 'install it, or remove it from credHelpers/credsStore in config.json',
      });
    }
    throw err;
  }
}
