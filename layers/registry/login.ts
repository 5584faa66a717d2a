// login/logout: check credentials against a registry, then save them docker-style; or remove them.
import { InvalidInputError } from '../../sys/errors.js';
import { connect, type RemoteOptions } from './connect.js';
import { eraseCredentials, saveCredentials } from './credentials.js';
import { normalizeRegistry } from './endpoint.js';

export interface LoginOptions extends Omit<RemoteOptions, 'credentials'> {
  username: string;
  password: string;
}

export interface LoginResult {
  /** the registry as saved (`docker.io` for Docker Hub) */
  registry: string;
  /** the config.json written */
  path: string;
  /** the credential helper that holds the secret, if one does */
  helper?: string;
  /** true when the registry's token server handed out an identity token, saved instead of the password */
  identityToken: boolean;
}

/**
 * loginRegistry verifies the username and password with the registry (GET /v2/, through its token server for a
 * Bearer realm) and only then saves them. Wrong credentials throw AuthError and nothing is written.
 */
export async function loginRegistry(registryInput: string, opts: LoginOptions): Promise<LoginResult> {
  const registry = normalizeRegistry(registryInput);
  if (!opts.username) throw new InvalidInputError('a username is needed', 'pass -u NAME');
  if (!opts.password)
    throw new InvalidInputError('a password is needed', 'pass --password-stdin and write it to standard input');
  const client = await connect(registry, {
    ...opts,
    credentials: { username: opts.username, password: opts.password },
    offlineToken: true,
  });
  try {
    await client.ping({ authenticate: true, ...(opts.signal ? { signal: opts.signal } : {}) });
    const identityToken = client.auth.scheme === 'bearer' ? client.auth.refreshToken : undefined;
    const saved = await saveCredentials(
      registry,
      identityToken ? { username: opts.username, identityToken } : { username: opts.username, password: opts.password },
      opts.env ? { env: opts.env } : {},
    );
    return { registry, ...saved, identityToken: !!identityToken };
  } finally {
    client.close();
  }
}

/** logoutRegistry removes saved credentials; `removed` is false when there were none. */
export async function logoutRegistry(
  registryInput: string,
  opts: { env?: NodeJS.ProcessEnv } = {},
): Promise<{ registry: string; removed: boolean }> {
  const registry = normalizeRegistry(registryInput);
  return { registry, removed: await eraseCredentials(registry, opts) };
}
