import test, { type ExecutionContext } from 'ava';
import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { secureJoin } from '../../sys/secure-path.js';
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
