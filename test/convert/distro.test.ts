import test from 'ava';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { detectDistro, distroOf, parseOsRelease, UnsupportedDistroError } from '../../convert/distro.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

test('os-release values lose their quotes and shell escapes', (t) => {
  const os = parseOsRelease(
    '# comment\nNAME="Debian GNU/Linux"\nID=debian\nVERSION_ID="12"\nPRETTY_NAME=\'Debian 12\'\nX="a \\"b\\" \\$c"\nnot a line\n',
  );
  t.deepEqual(os, {
    NAME: 'Debian GNU/Linux',
    ID: 'debian',
    VERSION_ID: '12',
    PRETTY_NAME: 'Debian 12',
    X: 'a "b" $c',
  });
});

const maps = test.macro({
  exec(t, text: string, id: string | undefined) {
    t.is<string | undefined, string | undefined>(distroOf(parseOsRelease(text))?.id, id);
  },
  title: (given, text: string, id: string | undefined) =>
    given ?? `os-release ${JSON.stringify(text.split('\n')[0])} is ${id ?? 'unsupported'}`,
});

test(maps, 'ID=debian\nVERSION_ID=12', 'debian');
test(maps, 'ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"', 'ubuntu');
test(maps, 'ID=alpine\nVERSION_ID=3.20.3', 'alpine');
test('a Debian derivative counts as debian through ID_LIKE', maps, 'ID=raspbian\nID_LIKE=debian', 'debian');
test(maps, 'ID=fedora\nVERSION_ID=40', undefined);
test(maps, 'ID="rhel"\nID_LIKE="fedora"', undefined);

test('the family of ubuntu is debian and of alpine is alpine', (t) => {
  t.is(distroOf(parseOsRelease('ID=ubuntu'))?.family, 'debian');
  t.is(distroOf(parseOsRelease('ID=alpine'))?.family, 'alpine');
});

test('detectDistro follows the /etc/os-release symlink inside the rootfs', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'etc'));
  await mkdir(join(dir, 'usr/lib'), { recursive: true });
  await writeFile(
    join(dir, 'usr/lib/os-release'),
    'ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n',
  );
  await symlink('/usr/lib/os-release', join(dir, 'etc/os-release')); // absolute: must resolve in the rootfs, not on the host
  t.like(detectDistro(dir), { id: 'debian', versionId: '12', prettyName: 'Debian GNU/Linux 12 (bookworm)' });
});

test('an unsupported distribution is an error that lists what is supported and how to pass --kernel', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await mkdir(join(dir, 'etc'));
  await writeFile(join(dir, 'etc/os-release'), 'ID=fedora\nPRETTY_NAME="Fedora Linux 40"\n');
  const err = t.throws(() => detectDistro(dir), { instanceOf: UnsupportedDistroError });
  t.regex(err?.message ?? '', /Fedora Linux 40/);
  t.regex(err?.message ?? '', /debian, ubuntu, alpine/);
  t.regex(err?.hint ?? '', /--kernel PATH/);
});

test('an image without os-release is unsupported, not a crash', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  t.throws(() => detectDistro(dir), { instanceOf: UnsupportedDistroError, message: /without \/etc\/os-release/ });
});
