// A fault-injecting HTTP proxy on 127.0.0.1 in front of a real registry. It logs every request and, by a rule,
// answers an error itself, cuts a request body or a response body in the middle, or serves corrupted bytes.
import http from 'node:http';
import type net from 'node:net';

type Teardown = { teardown(fn: () => unknown): void };

export interface SeenRequest {
  /** 1-based order of arrival */
  n: number;
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** ms since the proxy started */
  at: number;
  /** status sent back (0 when the connection was cut) */
  status?: number;
  fault?: string;
}

export type Fault =
  /** answer this without asking the registry */
  | { status: number; headers?: Record<string, string>; body?: string }
  /** pass on this many bytes of the request body, then cut both connections */
  | { cutRequestAfter: number }
  /** pass on the response head and this many bytes of its body, then cut the connection */
  | { cutResponseAfter: number }
  /** pass the response on with every body byte inverted (same length, same headers) */
  | { corrupt: true };

export type FaultRule = (req: SeenRequest, log: SeenRequest[]) => Fault | undefined;

export interface FaultProxy {
  host: string;
  port: number;
  log: SeenRequest[];
  rule: FaultRule | undefined;
  stop(): Promise<void>;
}

/** startFaultProxy listens on 127.0.0.1 and forwards to 127.0.0.1:upstreamPort (the Host header is passed on, so Locations point at the proxy). */
export async function startFaultProxy(t: Teardown, upstreamPort: number, rule?: FaultRule): Promise<FaultProxy> {
  const started = Date.now();
  const log: SeenRequest[] = [];
  const proxy: FaultProxy = { host: '', port: 0, log, rule, stop: async () => {} };
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const seen: SeenRequest = {
      n: log.length + 1,
      method: req.method ?? '',
      path: url.pathname,
      query: url.searchParams,
      headers: req.headers,
      at: Date.now() - started,
    };
    log.push(seen);
    const fault = proxy.rule?.(seen, log);
    if (fault && 'status' in fault) {
      seen.status = fault.status;
      seen.fault = `status ${fault.status}`;
      req.resume();
      res.writeHead(fault.status, { 'Content-Type': 'application/json', ...fault.headers });
      res.end(fault.body ?? JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    const upstream = http.request(
      { host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent: false },
      (up) => {
        seen.status = up.statusCode ?? 0;
        res.writeHead(up.statusCode ?? 502, up.rawHeaders as unknown as http.OutgoingHttpHeaders);
        if (fault && 'cutResponseAfter' in fault) {
          seen.fault = `cut response after ${fault.cutResponseAfter}`;
          let sent = 0;
          up.on('data', (b: Buffer) => {
            if (sent >= fault.cutResponseAfter) return;
            const take = b.subarray(0, fault.cutResponseAfter - sent);
            sent += take.length;
            res.write(take);
            if (sent >= fault.cutResponseAfter) {
              up.destroy();
              // let the bytes leave, then cut
              setTimeout(() => res.socket?.destroy(), 20);
            }
          });
          return;
        }
        if (fault && 'corrupt' in fault) {
          seen.fault = 'corrupt';
          up.on('data', (b: Buffer) => {
            const c = Buffer.from(b);
            for (let i = 0; i < c.length; i++) c[i] = (c[i] as number) ^ 0xff;
            res.write(c);
          });
          up.on('end', () => res.end());
          return;
        }
        up.pipe(res);
      },
    );
    upstream.on('error', () => res.socket?.destroy());
    if (fault && 'cutRequestAfter' in fault) {
      seen.fault = `cut request after ${fault.cutRequestAfter}`;
      seen.status = 0;
      let sent = 0;
      req.on('data', (b: Buffer) => {
        if (sent >= fault.cutRequestAfter) return;
        const take = b.subarray(0, fault.cutRequestAfter - sent);
        sent += take.length;
        upstream.write(take);
        if (sent >= fault.cutRequestAfter) {
          setTimeout(() => {
            upstream.destroy();
            req.socket.destroy();
          }, 20);
        }
      });
      return;
    }
    req.pipe(upstream);
  });
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  // a TLS hello or garbage: answer 400 and close (as node does by default)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  proxy.port = (server.address() as net.AddressInfo).port;
  proxy.host = `127.0.0.1:${proxy.port}`;
  proxy.stop = () =>
    new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  t.teardown(proxy.stop);
  return proxy;
}

/** isBlobData tells whether a request carries blob bytes (an upload PATCH or PUT). */
export function isBlobData(r: SeenRequest): boolean {
  return (r.method === 'PATCH' || r.method === 'PUT') && r.path.includes('/blobs/uploads/');
}
