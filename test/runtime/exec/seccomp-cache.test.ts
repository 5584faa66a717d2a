// The seccomp filters the CLI bundle keeps in the user's cache directory (runtime/exec/program.ts): outside the
// bundle there is no compiler hash and nothing is kept; in it, a kept filter is used only when it is safely the
// user's own and well-formed, and only by the compiler that made it. The bundle's compiler hash is played here by
// the global it names.
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { executorOps } from '../../../runtime/exec/program.js';
import type { SeccompProfile } from '../../../runtime/seccomp.js';
import { processSpec } from '../../../runtime/spec.js';
import { compileSeccomp } from '../../../sys/seccomp/bpf.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

const g = globalThis as { __TSBUILD_SECCOMP_COMPILER?: string };
let errnoRet = 100; // each test its own profile: compiled filters are also remembered in the process

async function setUp(t: ExecutionContext, compiler: string | undefined) {
  const cache = await makeTempDir('tsbuild-seccomp-cache-');
  const previous = process.env.XDG_CACHE_HOME;
  process.env.XDG_CACHE_HOME = cache;
  if (compiler === undefined) delete g.__TSBUILD_SECCOMP_COMPILER;
  else g.__TSBUILD_SECCOMP_COMPILER = compiler;
  t.teardown(async () => {
    delete g.__TSBUILD_SECCOMP_COMPILER;
    if (previous === undefined) delete process.env.XDG_CACHE_HOME;
    else process.env.XDG_CACHE_HOME = previous;
    await removeDir(cache);
  });
  const profile: SeccompProfile = {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: errnoRet++,
    syscalls: [{ names: ['read', 'write', 'exit_group'], action: 'SCMP_ACT_ALLOW' }],
  };
  const spec = processSpec({ config: { Cmd: ['true'] }, rootfs: cache, seccomp: profile });
  if (spec.seccomp === 'unconfined') throw new Error('a profile was given');
  const text = JSON.stringify(spec.seccomp);
  /** the file a compiler keeps this profile's filter in */
  const fileOf = (c: string) =>
    join(
      cache,
      'tsbuild',
      `seccomp-${createHash('sha256').update(`${c}\0${process.arch}\0${text}`).digest('hex').slice(0, 32)}.bpf`,
    );
  const program = () => {
    const op = executorOps(spec).find((o) => o.op === 'seccomp');
    return op?.op === 'seccomp' ? op.program : undefined;
  };
  return { cache, program, fileOf, expected: compileSeccomp(spec.seccomp).toString('hex') };
}

/** keep writes a cache file as a previous process would have. */
function keep(file: string, content: string, mode = 0o600): void {
  mkdirSync(join(file, '..'), { recursive: true });
  writeFileSync(file, content);
  chmodSync(file, mode);
}

/** another filter than any test profile's, well-formed */
const OTHER = 'ff00000000000000'.repeat(3);

test.serial('outside the bundle (no compiler hash) the filter is compiled and nothing is kept', async (t) => {
  const { cache, program, expected } = await setUp(t, undefined);
  t.is(program(), expected);
  t.deepEqual(readdirSync(cache), []);
});

test.serial('the bundle keeps a compiled filter, mode 0600, with no temp file left', async (t) => {
  const { cache, program, fileOf, expected } = await setUp(t, 'compiler-a');
  t.is(program(), expected);
  t.is(readFileSync(fileOf('compiler-a'), 'latin1'), expected);
  t.is(statSync(fileOf('compiler-a')).mode & 0o777, 0o600);
  t.is(readdirSync(join(cache, 'tsbuild')).length, 1);
});

test.serial('a filter kept by this user is used without compiling', async (t) => {
  const { program, fileOf } = await setUp(t, 'compiler-a');
  keep(fileOf('compiler-a'), OTHER);
  t.is(program(), OTHER);
});

test.serial('a filter kept by another compiler is never read', async (t) => {
  const { program, fileOf, expected } = await setUp(t, 'compiler-b');
  keep(fileOf('compiler-a'), OTHER);
  t.is(program(), expected);
  t.is(readFileSync(fileOf('compiler-b'), 'latin1'), expected);
});

for (const [title, content, mode] of [
  ['that others may write', OTHER, 0o666],
  ['that is not a filter', 'not hex at all', 0o600],
  ['cut short', OTHER.slice(0, 20), 0o600],
] as const) {
  test.serial(`a kept filter ${title} is ignored and replaced by a fresh compile`, async (t) => {
    const { program, fileOf, expected } = await setUp(t, 'compiler-a');
    keep(fileOf('compiler-a'), content, mode);
    t.is(program(), expected);
    t.is(readFileSync(fileOf('compiler-a'), 'latin1'), expected);
  });
}
