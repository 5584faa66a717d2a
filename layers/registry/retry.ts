// Retrying registry requests: which failures are worth another try, how long to wait, and when to stop.

/** RetryPolicy bounds every retry loop: attempts include the first try. */
export interface RetryPolicy {
  /** total tries of one request (default 5) */
  attempts: number;
  /** first back-off delay in ms, doubled each try (default 250) */
  baseDelayMs: number;
  /** longest back-off delay in ms (default 8000) */
  maxDelayMs: number;
  /** longest Retry-After honoured in ms; longer waits are cut to this (default 60000) */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 8_000, maxRetryAfterMs: 60_000 };

/** RETRY_STATUSES are answers that mean "try again later". */
const RETRY_STATUSES = new Set([408, 429, 500, 502, 503, 504]);

const TRANSIENT_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETRESET',
  'ERR_STREAM_PREMATURE_CLOSE',
  'UND_ERR_SOCKET',
  'E_TRUNCATED',
]);

/** isRetryableStatus tells whether an HTTP status is worth retrying. */
export function isRetryableStatus(status: number): boolean {
  return RETRY_STATUSES.has(status);
}

/** isTransientError tells whether a thrown error is a dropped or failed connection (not a TLS or protocol refusal). */
export function isTransientError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const e = err as { code?: unknown; message?: unknown; status?: unknown; transient?: unknown };
  if (e.transient === true) return true;
  if (typeof e.status === 'number' && isRetryableStatus(e.status)) return true;
  if (typeof e.code === 'string' && TRANSIENT_CODES.has(e.code)) return true;
  const msg = typeof e.message === 'string' ? e.message : '';
  return /socket hang up|aborted|premature close|other side closed/i.test(msg);
}

/** retryAfterMs parses a Retry-After header (delay-seconds or an HTTP date), capped by the policy; undefined when absent or bad. */
export function retryAfterMs(
  header: string | string[] | undefined,
  policy: RetryPolicy = DEFAULT_RETRY,
  now = Date.now(),
): number | undefined {
  const v = Array.isArray(header) ? header[0] : header;
  if (!v) return undefined;
  let ms: number;
  if (/^\s*\d+\s*$/.test(v)) ms = Number(v) * 1000;
  else {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = Math.max(0, t - now);
  }
  return Math.min(ms, policy.maxRetryAfterMs);
}

/** backoffMs is the delay before try number `attempt` (1 = the first retry): exponential with jitter. */
export function backoffMs(attempt: number, policy: RetryPolicy = DEFAULT_RETRY): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(exp / 2 + (Math.random() * exp) / 2);
}

/** sleep waits, or rejects with the signal's reason when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
