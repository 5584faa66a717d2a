import test, { type ExecutionContext } from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UnsafeEntryError } from '../../sys/errors.js';
import { CONTAINER_POLICY, ENTRY_POLICY, PathResolver, secureJoin } from '../../sys/secure-path.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

async function root(t: ExecutionContext): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'real/sub'), { recursive: true });
  await symlink('/real', join(dir, 'abs'));
  await symlink('../../../../../etc', join(dir, 'up'));
  await symlink('/', join(dir, 'slash'));
  await symlink('loop2', join(dir, 'loop1'));
  await symlink('loop1', join(dir, 'loop2'));
  await symlink('sub', join(dir, 'real/rel'));
  return dir;
}

const joins = test.macro({
  async exec(t, path: string, expected: string) {
    const dir = await root(t);
    t.is(secureJoin(dir, path), join(dir, expected));
  },
  title: (provided, path: string, expected: string) => provided ?? `${path} resolves to ${expected} inside the root`,
});

test(joins, '/proc', '/proc');
test(joins, '/abs/x', '/real/x');
test(joins, '/up/passwd', '/etc/passwd');
test(joins, '/slash/etc', '/etc');
test(joins, '/../../etc', '/etc');
test(joins, '/real/rel/new/deeper', '/real/sub/new/deeper');

test('a symlink loop is an error, not a hang', async (t) => {
  const dir = await root(t);
  t.throws(() => secureJoin(dir, '/loop1/x'), { message: /too many levels of symbolic links/ });
});

test('one walk, two policies: a relative link that climbs out is clamped for a container path, refused for a tar entry', async (t) => {
  const dir = await root(t);
  t.is(secureJoin(dir, '/up/passwd'), join(dir, 'etc/passwd'));
  const resolver = new PathResolver({ root: dir });
  t.throws(() => resolver.resolve('up/passwd', 'up/passwd'), {
    instanceOf: UnsafeEntryError,
    message: /leads out of the root/,
  });
  // an absolute target restarts at the root under both policies
  t.is(secureJoin(dir, '/abs/x'), join(dir, 'real/x'));
  t.deepEqual(resolver.resolve('abs/x', 'abs/x'), { rel: 'real/x', abs: join(dir, 'real/x'), viaLink: true });
  t.deepEqual([ENTRY_POLICY.escape, CONTAINER_POLICY.escape], ['refuse', 'clamp']);
});

test('secureJoin keeps missing and non-directory components as plain names', async (t) => {
  const dir = await root(t);
  await writeFile(join(dir, 'real/file'), '');
  t.is(secureJoin(dir, '/real/file/below'), join(dir, 'real/file/below'));
  t.is(secureJoin(dir, '/nowhere/../real/rel'), join(dir, 'real/sub'));
});
