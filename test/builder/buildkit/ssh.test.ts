// BuildKit's frontend/dockerfile/dockerfile_ssh_test.go, replayed offline (see harness.ts and README.md), plus the
// rules of dockerfile2llb/convert_ssh.go, client/llb/exec.go (default targets, SSH_AUTH_SOCK), solver mounts
// (required/optional ids, their messages) and sshprovider (the read-only agent, key files).
//
// Agents are real: `ssh-agent` processes this file starts on sockets in a private directory, and key files made
// with ssh-keygen. Inside the step a small static client (agentq, compiled here with cc) speaks the agent protocol:
// `agentq T…` sends requests of types T… on one connection and prints one reply per line (`12 N`: N identities;
// `5`: failure). testSSHFileDescriptorsClosed ran `ssh -T git@github.com` three times; offline, agentq connects
// three times and the agent's debug log must show each connection in the same slot (each one closed).
import test from 'ava';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { build } from '../../../builder/build.js';
import { getImage } from '../../../layers/store/image.js';
import { isRoot, makeTempDir, removeDir } from '../../helpers/index.js';
import { busyboxStore } from '../build-harness.js';
import { declareCases, readImageFile, type BkCase } from './harness.js';

const F = 'dockerfile_ssh_test.go';

const AGENTQ_C = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int full(int fd, unsigned char *b, size_t n) {
  for (size_t got = 0; got < n;) { ssize_t r = read(fd, b + got, n - got); if (r <= 0) return -1; got += r; }
  return 0;
}
int main(int argc, char **argv) {
  const char *path = getenv("SSH_AUTH_SOCK");
  if (!path) { fprintf(stderr, "agentq: no SSH_AUTH_SOCK\\n"); return 2; }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("agentq: connect"); return 3; }
  unsigned char req[5 * 16]; int n = 0;
  for (int i = 1; i < argc && n < 16; i++, n++) { unsigned char *r = req + 5 * n; r[0] = r[1] = r[2] = 0; r[3] = 1; r[4] = atoi(argv[i]); }
  if (write(fd, req, 5 * n) != 5 * n) { perror("agentq: write"); return 4; }
  static unsigned char body[1 << 18];
  for (int i = 0; i < n; i++) {
    unsigned char h[4];
    if (full(fd, h, 4)) { fprintf(stderr, "agentq: closed\\n"); return 5; }
    unsigned len = (unsigned)h[0] << 24 | h[1] << 16 | h[2] << 8 | h[3];
    if (len == 0 || len > sizeof body || full(fd, body, len)) { fprintf(stderr, "agentq: bad reply\\n"); return 6; }
    if (body[0] == 12 && len >= 5) printf("12 %u\\n", (unsigned)body[1] << 24 | body[2] << 16 | body[3] << 8 | body[4]);
    else printf("%u\\n", body[0]);
  }
  close(fd);
  return 0;
}
`;

// ─── the host side: a client binary, keys, agents (made before the tests are declared) ───────────────────────
const work = await mkdtemp(join(tmpdir(), 'tsbuild-ssh-test-')); // short: unix socket paths are limited
const agents: ChildProcess[] = [];

let agentq: Uint8Array | undefined;
let noTools = '';
try {
  writeFileSync(join(work, 'agentq.c'), AGENTQ_C);
  execFileSync('cc', ['-static', '-O2', '-o', join(work, 'agentq'), join(work, 'agentq.c')], { stdio: 'pipe' });
  agentq = readFileSync(join(work, 'agentq'));
  execFileSync('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-m', 'PEM', '-N', '', '-f', join(work, 'key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', join(work, 'locked')]);
} catch (err) {
  noTools = `cc -static or ssh-keygen failed: ${(err as Error).message.split('\n')[0]}`;
}

/** startAgent runs `ssh-agent -d` on a socket of its own, holding `key`; its debug log is collected. */
async function startAgent(name: string, key?: string): Promise<{ sock: string; log: () => string }> {
  const sock = join(work, `${name}.sock`);
  const child = spawn('ssh-agent', ['-d', '-a', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
  agents.push(child);
  let log = '';
  child.stderr!.on('data', (b: Buffer) => (log += b.toString()));
  const env = { ...process.env, SSH_AUTH_SOCK: sock };
  // the socket exists once the agent has bound it, a moment before it listens: wait until `ssh-add -l` connects
  // (exit 2 is "cannot connect"; 0 and 1 are an answer)
  for (let i = 0; !existsSync(sock) || spawnSync('ssh-add', ['-l'], { env, stdio: 'ignore' }).status === 2; i++) {
    if (i > 500) throw new Error(`ssh-agent did not start: ${log}`);
    await sleep(10);
  }
  if (key) execFileSync('ssh-add', ['-q', key], { env, stdio: 'pipe' });
  return { sock, log: () => log };
}

const ready = agentq !== undefined && isRoot;
const hostAgent = ready ? await startAgent('host', join(work, 'key')) : undefined;
const fdAgent = ready ? await startAgent('fds', join(work, 'key')) : undefined;
// declared after every top-level await (ava wants declarations in one go)
test.after.always(async () => {
  for (const a of agents) a.kill('SIGTERM');
  await removeDir(work);
});

const keyFile = (): Array<{ id: string; paths: string[] }> => [{ id: 'default', paths: [join(work, 'key')] }];
const socket = (id = 'default'): Array<{ id: string; paths: string[] }> => [{ id, paths: [hostAgent!.sock] }];
const context = (): BkCase['context'] => ({ agentq: { bytes: agentq! } });
const WITH_AGENTQ = 'FROM busybox\nCOPY --chmod=755 agentq /usr/bin/agentq\n';

export const cases: BkCase[] = [
  {
    from: `${F} testSSHSocketParams`,
    title: 'an ssh socket gets the uid, gid and mode asked for, at $SSH_AUTH_SOCK, from a key file',
    dockerfile: `
FROM busybox
RUN --mount=type=ssh,mode=741,uid=100,gid=102 [ "$(stat -c "%u %g %f" $SSH_AUTH_SOCK)" = "100 102 c1e1" ]
`,
    ssh: keyFile,
    expect: { files: { 'run/buildkit/ssh_agent.0': 'absent' } },
  },
  {
    from: `${F} testSSHSocketParams (sshprovider key files)`,
    title: 'a key file is served by an agent of the build: one identity, at the default target',
    dockerfile: `${WITH_AGENTQ}RUN --mount=type=ssh [ "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0 ] && [ "$(stat -c "%u %g %a" $SSH_AUTH_SOCK)" = "0 0 600" ] && [ "$(agentq 11)" = "12 1" ]\n`,
    context: context(),
    ssh: keyFile,
    expect: { newLayers: 2 },
  },
  {
    from: `${F} testSSHFileDescriptorsClosed`,
    title: 'each connection to a forwarded agent socket is closed after use (the agent reuses its first slot)',
    dockerfile: `${WITH_AGENTQ}RUN --mount=type=ssh for i in 1 2 3; do agentq 11 && sleep 0.3 || exit 1; done\n`,
    context: context(),
    ssh: () => [{ id: 'default', paths: [fdAgent!.sock] }],
    expect: {
      check: (t) => {
        // only the build's connections: the agent's setup (the `ssh-add -l` that waited for it, then `ssh-add`) may
        // have held two slots at once, when the agent took the second before it saw the first one close
        const full = fdAgent!.log();
        const log = full.slice(full.lastIndexOf('process_add_identity'));
        t.regex(log, /process_message: socket 1 /);
        t.notRegex(log, /process_message: socket 2 /);
        t.notRegex(log, /process_message: socket 3 /);
      },
    },
  },
  {
    from: `${F} (sshprovider readOnlyAgent)`,
    title: 'a forwarded agent is read-only: removing keys fails, the keys stay, replies keep their order',
    dockerfile: `${WITH_AGENTQ}RUN --mount=type=ssh [ "$(agentq 19 11 22 11 | tr '\\n' ' ')" = "5 12 1 5 12 1 " ]\n`,
    context: context(),
    ssh: () => socket(),
    expect: {
      check: (t) => {
        const env = { ...process.env, SSH_AUTH_SOCK: hostAgent!.sock };
        t.regex(execFileSync('ssh-add', ['-l'], { env }).toString(), /RSA/);
      },
    },
  },
  {
    from: `${F} (convert_ssh.go id, target, required)`,
    title: 'a named agent at a target of its own, required and given',
    dockerfile: `${WITH_AGENTQ}RUN --mount=type=ssh,id=other,target=/tmp/agent.sock,required [ -S /tmp/agent.sock ] && [ "$SSH_AUTH_SOCK" = /tmp/agent.sock ] && [ "$(agentq 11)" = "12 1" ]\n`,
    context: context(),
    ssh: () => socket('other'),
    expect: { files: { 'tmp/agent.sock': 'absent' } },
  },
  {
    from: `${F} (client/llb/exec.go default targets)`,
    title: 'two ssh mounts are ssh_agent.0 and ssh_agent.1; SSH_AUTH_SOCK is the first',
    dockerfile: `FROM busybox
RUN --mount=type=ssh --mount=type=ssh,id=b [ -S /run/buildkit/ssh_agent.0 ] && [ -S /run/buildkit/ssh_agent.1 ] && [ "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0 ]
`,
    ssh: () => [...socket(), { id: 'b', paths: [join(work, 'key')] }],
    expect: { newLayers: 1 },
  },
  {
    from: `${F} (client/llb/exec.go keeps an SSH_AUTH_SOCK of the image)`,
    title: 'an SSH_AUTH_SOCK set by ENV is kept',
    dockerfile:
      'FROM busybox\nENV SSH_AUTH_SOCK=/mine\nRUN --mount=type=ssh [ "$SSH_AUTH_SOCK" = /mine ] && [ -S /run/buildkit/ssh_agent.0 ]\n',
    ssh: () => socket(),
    expect: { newLayers: 1 },
  },
  {
    from: `${F} (solver/llbsolver/mounts getSSHMountable: optional)`,
    title: 'an ssh mount whose id was not given runs without a socket (SSH_AUTH_SOCK still set)',
    dockerfile:
      'FROM busybox\nRUN --mount=type=ssh,id=nope [ ! -e /run/buildkit/ssh_agent.0 ] && [ "$SSH_AUTH_SOCK" = /run/buildkit/ssh_agent.0 ]\n',
    ssh: () => socket(),
    expect: { newLayers: 1 },
  },
  {
    from: `${F} (solver/llbsolver/mounts getSSHMountable: required, no --ssh)`,
    title: 'a required ssh mount without any --ssh fails: no SSH key "default" forwarded from the client',
    dockerfile: 'FROM busybox\nRUN --mount=type=ssh,required true\n',
    expect: { error: 'no SSH key "default" forwarded from the client' },
  },
  {
    from: `${F} (sshprovider CheckAgent: required, other ids given)`,
    title: 'a required ssh mount whose id was not given fails: unset ssh forward key ID',
    dockerfile: 'FROM busybox\nRUN --mount=type=ssh,id=nope,required=true true\n',
    ssh: () => socket(),
    expect: { error: 'unset ssh forward key nope' },
  },
  {
    from: `${F} (convert_ssh.go dispatchSSH)`,
    title: 'an ssh mount with source= is refused: ssh does not support source',
    dockerfile: 'FROM busybox\nRUN --mount=type=ssh,source=/x true\n',
    expect: { error: 'ssh does not support source' },
  },
  {
    from: `${F} (sshprovider toDialer: keys)`,
    title: 'a key protected by a passphrase is refused before the build runs, without a prompt',
    dockerfile: 'FROM busybox\nRUN --mount=type=ssh true\n',
    ssh: () => [{ id: 'default', paths: [join(work, 'locked')] }],
    expect: { error: /--ssh default: .*locked is protected by a passphrase/ },
  },
  {
    from: `${F} (sshprovider toDialer: keys and sockets)`,
    title: 'a socket and a key under one id are refused: invalid combination of keys and sockets',
    dockerfile: 'FROM busybox\nRUN --mount=type=ssh true\n',
    ssh: () => [{ id: 'default', paths: [join(work, 'key'), hostAgent!.sock] }],
    expect: { error: /only single socket allowed|invalid combination of keys and sockets/ },
  },
];

if (noTools) test.skip(`the ssh cases (${noTools})`, () => {});
else declareCases(cases);

// The cache key is the mount's spec (BuildKit's ExecOp mount), never the socket: a rebuild with another agent
// socket is cached; another mode is not.
const keyTest = ready ? test.serial : test.serial.skip;
keyTest(
  'an ssh RUN is cached across agent sockets; its mode is in the key [dockerfile_ssh_test.go (ExecOp SSHOpt in the cache key)]',
  async (t) => {
    const store = await busyboxStore({ teardown: (fn) => t.teardown(fn) });
    const ctx = await makeTempDir('tsbuild-ssh-ctx-');
    t.teardown(() => removeDir(ctx));
    const df = (mode: string): string =>
      `FROM busybox:test\nRUN --mount=type=ssh,mode=${mode} cat /proc/sys/kernel/random/uuid > /stamp\n`;
    const run = async (tag: string, mode: string, ssh: Array<{ id: string; paths: string[] }>): Promise<string> => {
      writeFileSync(join(ctx, 'Dockerfile'), df(mode));
      await build({ store, context: ctx, tags: [tag], network: 'none', ssh });
      return readImageFile(store, tag, 'stamp');
    };
    const first = await run('a:1', '600', socket());
    t.is(await run('a:2', '600', keyFile()), first, 'another agent: cached');
    t.not(await run('a:3', '640', socket()), first, 'another mode: run again');
    t.truthy(await getImage(store, 'a:3'));
  },
);
