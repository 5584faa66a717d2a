// connect: a RegistryClient for one registry with the saved credentials (docker config.json) and progress wiring.
import type { Credentials } from './auth.js';
import { RegistryClient } from './client.js';
import { getCredentials } from './credentials.js';
import type { OnTransferEvent } from './events.js';
import type { RetryPolicy } from './retry.js';

/** RemoteOptions are the options push, pull and login share. */
export interface RemoteOptions {
  /** allow plain HTTP and unverified TLS to this registry */
  insecure?: boolean;
  /** PEM file of an extra CA to trust */
  caCert?: string;
  /** credentials to use instead of the saved ones */
  credentials?: Credentials;
  /** environment for DOCKER_CONFIG, HOME and credential helpers (default process.env) */
  env?: NodeJS.ProcessEnv;
  retry?: Partial<RetryPolicy>;
  /** socket idle timeout in ms */
  timeoutMs?: number;
  onEvent?: OnTransferEvent;
  signal?: AbortSignal;
}

/** connect makes a client for `registry` (not yet contacted). */
export async function connect(
  registry: string,
  opts: RemoteOptions & { maxSockets?: number; offlineToken?: boolean },
): Promise<RegistryClient> {
  const env = opts.env ?? process.env;
  const credentials =
    opts.credentials ??
    (await getCredentials(registry, { env, onWarning: (message) => opts.onEvent?.({ type: 'warning', message }) }));
  return new RegistryClient({
    registry,
    env,
    ...(opts.insecure ? { insecure: true } : {}),
    ...(opts.caCert ? { caCert: opts.caCert } : {}),
    ...(credentials ? { credentials } : {}),
    ...(opts.retry ? { retry: opts.retry } : {}),
    ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
    ...(opts.maxSockets ? { maxSockets: opts.maxSockets } : {}),
    ...(opts.offlineToken ? { offlineToken: true } : {}),
    onRetry: (info) => opts.onEvent?.({ type: 'retry', ...info }),
    onWarning: (message) => opts.onEvent?.({ type: 'warning', message }),
  });
}
