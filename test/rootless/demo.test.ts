// The README's main job as an ordinary user (issue 11, acceptance 2 and 5): `bash scripts/demo.sh` run by a user
// made here with a subordinate id range, in a clone it cannot write (so the store is its default one). The demo
// bootstraps Debian, builds the example (apt-get in a rootless RUN step, through the sandbox's own network),
// runs it, exports it to a disk (the kernel is installed in a rootless RUN step: the image has none) and boots the
// disk until the program's line shows. Slow (the Debian archive, a TCG boot): skipped with TSBUILD_TEST_SLOW=0.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { isRoot, repoRoot } from '../helpers/index.js';
import { makeUser, type TestUser } from '../helpers/users.js';

const slow = isRoot && process.env.TSBUILD_TEST_SLOW !== '0';
const demoTest = slow ? test.serial : test.serial.skip;

let user: TestUser | undefined;
if (slow) {
  test.before(() => {
    user = makeUser('tsbuild-demo');
  });
  test.after.always(() => user?.remove());
}

demoTest(
  `an ordinary user runs the whole main job: bootstrap, build, run, export with a kernel installed rootless, boot${slow ? '' : ' (skipped: needs root to make the user, and TSBUILD_TEST_SLOW!=0)'}`,
  async (t) => {
    const u = user as TestUser;
    const r = await u.run(['bash', join(repoRoot, 'scripts', 'demo.sh')], { env: { CI: 'true' } });
    const tail = `exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-6000)}`;
    t.is(r.code, 0, tail);
    t.regex(r.stderr, /rootless/, 'the demo says it runs rootless');
    t.regex(r.stdout + r.stderr, /hello from tsbuild example/, tail);
    t.regex(
      r.stderr,
      /installing linux-image-\S+ .* in the image/,
      'the export installed the kernel (the image has none)',
    );
    const store = join(u.home, '.local', 'share', 'tsbuild');
    t.deepEqual(await readdir(join(store, 'tmp')).catch(() => []), [], 'no temp dir left in the store');
    let left = '';
    try {
      left = execFileSync('ps', ['-u', String(u.uid), '-o', 'pid=,args='], { encoding: 'utf8' });
    } catch {
      // ps exits 1 when it lists nothing
    }
    t.is(left.trim(), '', 'no process of the user left');
  },
);
