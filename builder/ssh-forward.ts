// `build --ssh`: the SSH agents a build forwards to `RUN --mount=type=ssh` (BuildKit's session/sshforward and
// sshprovider, docker buildx's flag).
//
// A source is `default|ID[=SOCKET|KEY[,KEY…]]`: an agent socket (no path: $SSH_AUTH_SOCK), or private key files that
// tsbuild loads into an ssh-agent of its own (Debian's openssh-client: `ssh-agent -D` on a socket in a private
// temporary directory, started on first use, dying with this process, stopped when the build ends). A key protected
// by a passphrase is refused (nothing ever prompts). Every source is checked when the build starts.
//
// Each RUN mount gets a fresh socket of its own (listen): a private temporary directory, the socket chowned and
// chmodded as the mount asks, bind-mounted into the step. Each connection to it is proxied to the agent as BuildKit's
// read-only agent does it: only "list identities" and "sign" reach the agent; adding, removing, locking and
// extensions are answered with a failure. Requests are answered in order, one at a time; a connection's agent
// connection is closed with it.
import { readFileSync, statSync, chmodSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { InvalidInputError, ToolError } from '../sys/errors.js';
import { requireTools, run } from '../sys/exec.js';
import type { Host } from '../sys/host.js';

/** DEFAULT_SSH_ID is the id of `--ssh default` and of a mount without id= (sshforward.DefaultID). */
export const DEFAULT_SSH_ID = 'default';

/** SshSource is one --ssh value: an id and its paths (one socket, or key files). */
export interface SshSource {
  id: string;
  paths: string[];
}

/** parseSshFlag reads buildx's `--ssh default|ID[=SOCKET|KEY[,KEY…]]`; without paths, env.SSH_AUTH_SOCK. */
export function parseSshFlag(value: string, env: NodeJS.ProcessEnv): SshSource {
  const eq = value.indexOf('=');
  const id = (eq < 0 ? value : value.slice(0, eq)) || DEFAULT_SSH_ID;
  const paths = eq < 0 ? [] : value.slice(eq + 1).split(',');
  if (paths.length === 0 || (paths.length === 1 && paths[0] === '')) {
    const sock = env.SSH_AUTH_SOCK ?? '';
    if (sock === '')
      throw new InvalidInputError(
        `--ssh ${value}: invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set`,
        `start an agent (eval "$(ssh-agent)"; ssh-add), or give a key: --ssh ${id}=$HOME/.ssh/id_ed25519`,
      );
    return { id, paths: [sock] };
  }
  return { id, paths };
}

const TOOLS = { 'ssh-agent': 'openssh-client', 'ssh-add': 'openssh-client', 'ssh-keygen': 'openssh-client' };

type Agent = { socket: string } | { keys: Array<{ path: string; bytes: Buffer }>; started?: Promise<string> };

/** SshListener is one RUN mount's socket. */
export interface SshListener {
  path: string;
  close: () => Promise<void>;
}

/** SshForwarder holds a build's --ssh agents and makes the per-RUN sockets. */
export class SshForwarder {
  private readonly stops: Array<() => Promise<void>> = [];
  private readonly listeners = new Set<SshListener>();

  private constructor(private readonly agents: ReadonlyMap<string, Agent>) {}

  /** open checks every source (BuildKit's rules and messages); key files are read and checked, not loaded yet. */
  static async open(sources: readonly SshSource[]): Promise<SshForwarder> {
    const agents = new Map<string, Agent>();
    for (const s of sources) {
      const id = s.id || DEFAULT_SSH_ID;
      if (agents.has(id)) throw new InvalidInputError(`--ssh: duplicate agent ID ${JSON.stringify(id)}`);
      agents.set(id, await readSource(id, s.paths));
    }
    return new SshForwarder(agents);
  }

  /** ids are the agent ids given. */
  ids(): string[] {
    return [...this.agents.keys()];
  }

  has(id: string): boolean {
    return this.agents.has(id);
  }

  /** listen makes a fresh socket for one RUN mount of agent `id`, owned uid:gid with `mode` (permission bits). */
  async listen(id: string, o: { uid: number; gid: number; mode: number; host: Host }): Promise<SshListener> {
    const agent = this.agents.get(id);
    if (!agent) throw new InvalidInputError(`unset ssh forward key ${id}`);
    const upstream = 'socket' in agent ? agent.socket : await (agent.started ??= this.startAgent(agent.keys));
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-ssh-'));
    const path = join(dir, 'agent.sock');
    const conns = new Set<Socket>();
    const server: Server = createServer({ allowHalfOpen: true }, (c) => {
      conns.add(c);
      c.on('close', () => conns.delete(c));
      proxyAgent(c, upstream);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(path, () => resolve());
      });
      o.host.lchown(path, o.uid, o.gid);
      chmodSync(path, o.mode & 0o777);
    } catch (err) {
      server.close();
      await rm(dir, { recursive: true, force: true });
      throw err;
    }
    const l: SshListener = {
      path,
      close: async () => {
        this.listeners.delete(l);
        for (const c of conns) c.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await rm(dir, { recursive: true, force: true });
      },
    };
    this.listeners.add(l);
    return l;
  }

  /** close stops every socket and the agents tsbuild started. */
  async close(): Promise<void> {
    for (const l of [...this.listeners]) await l.close().catch(() => {});
    for (const stop of this.stops.splice(0)) await stop().catch(() => {});
  }

  /** startAgent runs `ssh-agent -D` on a private socket (killed with us) and adds the keys from stdin. */
  private async startAgent(keys: Array<{ path: string; bytes: Buffer }>): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'tsbuild-ssh-agent-'));
    const sock = join(dir, 'agent.sock');
    const abort = new AbortController();
    let failed: unknown;
    // setpriv: the agent gets SIGKILL when this process dies, whatever way it does
    const agent = run(['setpriv', '--pdeathsig', 'KILL', '--', 'ssh-agent', '-D', '-a', sock], {
      signal: abort.signal,
    }).catch((err: unknown) => {
      failed = err;
    });
    this.stops.push(async () => {
      abort.abort();
      await agent;
      await rm(dir, { recursive: true, force: true });
    });
    // ready when it accepts a connection: the socket file appears at bind(2), before the agent listens
    for (let i = 0; !(await accepts(sock)); i++) {
      if (failed !== undefined) throw failed;
      if (i > 500) throw new InvalidInputError(`ssh-agent did not listen on ${sock}`);
      await sleep(10);
    }
    const env: NodeJS.ProcessEnv = { ...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS_REQUIRE: 'never' };
    delete env.DISPLAY;
    for (const k of keys) {
      await withKeyCopy(k.bytes, (file) => run(['ssh-add', '-q', file], { env })).catch((err: unknown) => {
        throw new InvalidInputError(`--ssh: failed to add ${k.path} to agent: ${(err as Error).message}`);
      });
    }
    return sock;
  }
}

/** accepts tells whether something listens on the unix socket `path` (a connection is made and closed). */
function accepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** readSource checks one source's paths: one socket, or key files without a passphrase. */
async function readSource(id: string, paths: readonly string[]): Promise<Agent> {
  let socket: string | undefined;
  const keys: Array<{ path: string; bytes: Buffer }> = [];
  for (const p of paths) {
    if (socket !== undefined) throw new InvalidInputError(`--ssh ${id}: only single socket allowed`);
    let st;
    try {
      st = statSync(p);
    } catch (err) {
      throw new InvalidInputError(`--ssh ${id}: ${(err as NodeJS.ErrnoException).code ?? 'cannot read'}: ${p}`);
    }
    if (st.isSocket()) {
      socket = p;
      continue;
    }
    let bytes: Buffer;
    try {
      bytes = readFileSync(p).subarray(0, 100 * 1024);
    } catch (err) {
      throw new InvalidInputError(`--ssh ${id}: failed to open ${p}: ${(err as NodeJS.ErrnoException).code}`);
    }
    await checkKey(id, p, bytes);
    keys.push({ path: p, bytes });
  }
  if (socket !== undefined) {
    if (keys.length) throw new InvalidInputError(`--ssh ${id}: invalid combination of keys and sockets`);
    return { socket };
  }
  return { keys };
}

/**
 * withKeyCopy gives `fn` a private 0600 copy of a key: ssh-keygen and ssh-add refuse keys that others may read, and
 * BuildKit does not care who may read the user's file.
 */
async function withKeyCopy<T>(bytes: Buffer, fn: (file: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'tsbuild-ssh-key-'));
  try {
    await writeFile(join(dir, 'key'), bytes, { mode: 0o600 });
    return await fn(join(dir, 'key'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** checkKey parses a private key with ssh-keygen (an empty passphrase: it never prompts). */
async function checkKey(id: string, path: string, bytes: Buffer): Promise<void> {
  requireTools(TOOLS);
  try {
    await withKeyCopy(bytes, (file) => run(['ssh-keygen', '-y', '-P', '', '-f', file]));
  } catch (err) {
    const stderr = err instanceof ToolError ? err.stderr : String(err);
    if (/passphrase/i.test(stderr))
      throw new InvalidInputError(
        `--ssh ${id}: ${path} is protected by a passphrase; tsbuild does not prompt for it`,
        `load it into your agent (ssh-add ${path}) and pass --ssh ${id} (the agent's socket)`,
      );
    const why =
      stderr
        .trim()
        .split('\n')
        .pop()
        ?.replace(/^Load key "[^"]*": /, '') || 'not a private key';
    throw new InvalidInputError(`--ssh ${id}: failed to parse ${path}: ${why}`);
  }
}

/** The agent protocol (draft-miller-ssh-agent): what a RUN may ask (list identities, sign), and the failure reply. */
const ALLOWED = new Set([11, 13]);
const FAILURE = Buffer.from([0, 0, 0, 1, 5]);
const MAX_MESSAGE = 256 * 1024;

/** takeFrame splits one length-prefixed message off `buf` (undefined: incomplete; null: too large). */
function takeFrame(buf: Buffer): [Buffer, Buffer] | undefined | null {
  if (buf.length < 4) return undefined;
  const n = buf.readUInt32BE(0);
  if (n > MAX_MESSAGE) return null;
  if (buf.length < 4 + n) return undefined;
  return [buf.subarray(0, 4 + n), buf.subarray(4 + n)];
}

/** proxyAgent serves one connection from a RUN: allowed requests go to the agent at `upstreamPath`, in order. */
export function proxyAgent(client: Socket, upstreamPath: string): void {
  let upstream: Socket | undefined;
  let pending: Buffer = Buffer.alloc(0);
  let replies: Buffer = Buffer.alloc(0);
  let waiting = false;
  let clientEnded = false;
  const stop = (): void => {
    client.destroy();
    upstream?.destroy();
  };
  const finishIfIdle = (): void => {
    if (clientEnded && !waiting && pending.length === 0) {
      client.end();
      upstream?.destroy();
    }
  };
  const pump = (): void => {
    while (!waiting) {
      const f = takeFrame(pending);
      if (f === null) return stop();
      if (f === undefined) return finishIfIdle();
      const [req, rest] = f;
      pending = rest;
      if (req.length < 5 || !ALLOWED.has(req[4]!)) {
        client.write(FAILURE);
        continue;
      }
      if (!upstream) {
        upstream = connect(upstreamPath);
        upstream.on('data', onReply);
        upstream.on('error', stop);
        upstream.on('close', () => client.destroy());
      }
      waiting = true;
      upstream.write(req);
    }
  };
  const onReply = (d: Buffer): void => {
    replies = Buffer.concat([replies, d]);
    const f = takeFrame(replies);
    if (f === null) return stop();
    if (f === undefined) return;
    if (!waiting) return stop();
    replies = f[1];
    waiting = false;
    client.write(f[0]);
    pump();
  };
  client.on('data', (d: Buffer) => {
    pending = Buffer.concat([pending, d]);
    pump();
  });
  client.on('end', () => {
    clientEnded = true;
    finishIfIdle();
  });
  client.on('error', stop);
  client.on('close', () => upstream?.destroy());
}
