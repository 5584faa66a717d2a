// `build --ssh` and `RUN --security=insecure` as an ordinary user (rootless mode: the CLI runs in a user namespace
// of its own, sys/userns.ts). The ssh socket is owned by the uid/gid the mount asks for inside that namespace, the
// build's ssh-agent is gone when the build ends, and the insecure step holds every capability of the namespace.
// The step's image is busybox (the host's) and agentq, a static agent-protocol client (test/builder/buildkit/ssh.test.ts).
import { execFileSync } from 'node:child_process';
import { chmod, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeDir, repoRoot, rootTest } from '../../helpers/index.js';
import { makeUser } from '../../helpers/users.js';

const source = await readFile(join(repoRoot, 'test/builder/buildkit/ssh.test.ts'), 'utf8');
const agentqC = /const AGENTQ_C = `([\s\S]*?)`;/.exec(source)?.[1]?.replaceAll('\\n', '\n');

const DOCKERFILE = `FROM scratch
COPY busybox /bin/busybox
COPY agentq /bin/agentq
SHELL ["/bin/busybox", "sh", "-c"]
RUN --mount=type=ssh,uid=100,gid=102,mode=741 [ "$(busybox stat -c '%u %g %a' $SSH_AUTH_SOCK)" = "100 102 741" ] && [ "$(agentq 11)" = "12 1" ] && echo SSH-OK
RUN --security=insecure busybox grep CapBnd /proc/self/status
`;

rootTest('an ordinary user forwards a key to RUN --mount=type=ssh and runs an insecure step', async (t) => {
  if (!agentqC) return t.fail('AGENTQ_C not found in ssh.test.ts');
  const user = makeUser('tsbqssh');
  t.teardown(() => user.remove());
  const dir = await makeTempDir('tsbuild-ssh-rootless-');
  t.teardown(() => removeDir(dir));
  await chmod(dir, 0o755);
  const ctx = join(dir, 'ctx');
  await mkdir(ctx);
  await writeFile(join(dir, 'agentq.c'), agentqC);
  execFileSync('cc', ['-static', '-O2', '-o', join(ctx, 'agentq'), join(dir, 'agentq.c')]);
  await copyFile(execFileSync('sh', ['-c', 'command -v busybox']).toString().trim(), join(ctx, 'busybox'));
  await writeFile(join(ctx, 'Dockerfile'), DOCKERFILE);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'key')]);
  for (const p of [ctx, join(ctx, 'agentq'), join(ctx, 'busybox'), join(ctx, 'Dockerfile'), join(dir, 'key')])
    await chown(p, user.uid, user.gid);

  const r = await user.run([
    process.execPath,
    '--',
    join(repoRoot, 'bin', 'tsbuild.js'),
    '--root',
    join(user.home, 'store'),
    'build',
    '--progress',
    'plain',
    '--allow',
    'security.insecure',
    '--ssh',
    `default=${join(dir, 'key')}`,
    ctx,
  ]);
  t.is(r.code, 0, r.stderr.slice(-3000));
  t.regex(r.stderr, /SSH-OK/);
  t.regex(r.stderr, /CapBnd:\s+0*1f+\b/, 'every capability of the user namespace');
  let left = '';
  try {
    left = execFileSync('ps', ['-u', String(user.uid), '-o', 'args=']).toString();
  } catch {
    // ps exits 1 when the user has no process left
  }
  t.notRegex(left, /ssh-agent/, 'the build stopped its ssh-agent');
});
