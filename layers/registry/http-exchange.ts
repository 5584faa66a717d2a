// One HTTP request/response over Node's http/https with an Agent: no retries, no redirects, no auth. A body stream
// that fails (for instance a blob that no longer verifies) aborts the request with that stream's error.
import http, { type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import { TransferClock, type TransferFloor } from './transfer-floor.js';

export interface Exchange {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: Buffer | Readable;
  agent: http.Agent;
  /** socket idle time that aborts the exchange (ms) */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** ExchangeError marks a failure of the connection (not of the body source) so retry logic can tell them apart. */
export class ExchangeError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly transient: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * exchange sends one request and resolves with the response head (the caller consumes or destroys the body).
 * The promise rejects with the body stream's own error when the body source fails.
 */
export function exchange(x: Exchange): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = x.url.protocol === 'https:' ? https : http;
    let settled = false;
    let bodyError: unknown;
    const fail = (err: unknown): void => {
      if (x.body && !Buffer.isBuffer(x.body) && !x.body.destroyed) x.body.destroy(); // release the file
      if (settled) return;
      settled = true;
      reject(bodyError ?? err);
    };
    const req = mod.request(x.url, { method: x.method, headers: x.headers, agent: x.agent, signal: x.signal });
    req.setTimeout(x.timeoutMs, () => {
      req.destroy(new ExchangeError(`no data for ${Math.round(x.timeoutMs / 1000)}s`, 'ETIMEDOUT', true));
    });
    req.on('error', fail);
    req.on('response', (res) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      if (x.body && !Buffer.isBuffer(x.body)) {
        // the server answered before taking the whole body (an error, a redirect): stop sending
        const src = x.body;
        if (!src.readableEnded) {
          src.unpipe(req);
          src.destroy();
        }
      }
      resolve(res);
    });
    if (x.body === undefined) req.end();
    else if (Buffer.isBuffer(x.body)) req.end(x.body);
    else {
      const src = x.body;
      src.on('error', (err) => {
        bodyError = err;
        req.destroy(err);
      });
      src.pipe(req);
    }
  });
}

/**
 * readBody reads a whole (small) body; rejects with E_TOO_LARGE past `limit` bytes, destroying the response. A
 * `floor` (layers/registry/transfer-floor.ts) also destroys it when the body arrives too slowly (E_TOO_SLOW).
 */
export async function readBody(res: IncomingMessage, limit: number, floor?: TransferFloor): Promise<Buffer> {
  const clock = floor ? new TransferClock(floor, (err) => res.destroy(err)) : undefined;
  try {
    return await readBodyWatched(res, limit, clock);
  } finally {
    clock?.stop();
  }
}

async function readBodyWatched(res: IncomingMessage, limit: number, clock?: TransferClock): Promise<Buffer> {
  const declared = Number(res.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    res.destroy();
    throw new ExchangeError(
      `response of ${declared} bytes is larger than the ${limit}-byte limit`,
      'E_TOO_LARGE',
      false,
    );
  }
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.destroy();
      throw new ExchangeError(`response larger than the ${limit}-byte limit`, 'E_TOO_LARGE', false);
    }
    clock?.progress(size);
    parts.push(chunk);
  }
  if (Number.isFinite(declared) && size < declared)
    throw new ExchangeError(`response truncated at ${size} of ${declared} bytes`, 'E_TRUNCATED', true);
  return Buffer.concat(parts);
}

/** drain throws away a response body: small ones are read to the end (the socket is then reused), big ones cut. */
export async function drain(res: IncomingMessage): Promise<void> {
  if (res.readableEnded || res.destroyed) return;
  const declared = Number(res.headers['content-length']);
  if (!res.complete && (!Number.isFinite(declared) || declared > 65_536)) {
    res.destroy();
    return;
  }
  await new Promise<void>((resolve) => {
    res.once('end', resolve);
    res.once('close', resolve);
    res.once('error', () => resolve());
    res.resume();
  });
}

/** header returns one header's first value. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}
