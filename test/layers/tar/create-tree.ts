// A tree with every kind of entry the layer tar writer handles specially (test/layers/tar/create-bytes.test.ts
// pins the bytes of its tars; the same tree serves byte comparisons of two versions of the writer).
import { chmod, link, lchown, lutimes, mkdir, symlink, writeFile } from 'node:fs/promises';
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { mknod, setXattr } from '../../../sys/libc.js';

const S_IFCHR = 0o020000;
const S_IFBLK = 0o060000;
const S_IFIFO = 0o010000;

/** body is `size` deterministic bytes (a different stream per seed). */
function body(size: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** makeTrickyTree writes the tree (as root: owners, devices, trusted and security xattrs). */
export async function makeTrickyTree(root: string): Promise<void> {
  const T = 1262304000; // 2010-01-01
  const dirs = [
    'd',
    'd/sub',
    'big',
    'links',
    'names',
    'names/' + 'p'.repeat(60) + '/' + 'q'.repeat(60),
    'names/' + 'x'.repeat(99),
    'names/' + 'y'.repeat(100),
    'names/' + 'z'.repeat(200),
    'names/é-dir',
    'owners',
    'times',
    'modes',
    'xattrs',
    'dev',
    'empty',
    'many',
  ];
  for (const d of dirs) await mkdir(join(root, d), { recursive: true });
  const sizes = [0, 1, 100, 511, 512, 513, 4096, 65535, 65536, 65537, 200_000, 1 << 20, (1 << 20) + 1, 2_500_000];
  for (const [i, size] of sizes.entries()) await writeFile(join(root, 'big', `f-${size}`), body(size, i + 1));
  for (const [i, size] of [0, 10, 700, 70_000].entries())
    await writeFile(join(root, 'd', `file${i}`), body(size, 50 + i));
  // enough small files for several output chunks, of sizes that put the 512-byte boundaries anywhere
  for (let i = 0; i < 1500; i++) await writeFile(join(root, 'many', `m${i}`), body((i * 37) % 3001, 1000 + i));
  await writeFile(join(root, 'd/sub/.wh.looks-like-a-whiteout'), 'x');
  await writeFile(join(root, 'd/sub/plain'), 'plain\n');

  // names
  const longFile = join('names', 'p'.repeat(60), 'q'.repeat(60), 'r'.repeat(90)); // > 100, split into prefix
  await writeFile(join(root, longFile), 'long');
  await writeFile(join(root, 'names', 'x'.repeat(99), 'f'), 'in a 99-char dir');
  await writeFile(join(root, 'names', 'y'.repeat(100), 'f'), 'in a 100-char dir');
  await writeFile(join(root, 'names', 'z'.repeat(200), 'w'.repeat(250)), 'one component over 155');
  await writeFile(join(root, 'names', 'é-dir', '日本語.txt'), 'utf-8 name');
  await writeFile(join(root, 'names', 'a'.repeat(100)), 'exactly 100');
  await writeFile(join(root, 'names', 'b'.repeat(101)), 'just over 100');
  await symlink('t'.repeat(100), join(root, 'names', 'link-100'));
  await symlink('t'.repeat(101), join(root, 'names', 'link-101'));
  await symlink('../ünïcode/target', join(root, 'names', 'link-utf8'));
  await symlink('', join(root, 'names', 'link-empty')).catch(() => {}); // Linux refuses an empty target

  // hardlinks: within a directory, across directories, to a long name, a file with nlink > 1 left alone once
  await writeFile(join(root, 'links', 'a'), 'shared');
  setXattr(join(root, 'links', 'a'), 'user.linked', Buffer.from('only on the first entry'));
  await link(join(root, 'links', 'a'), join(root, 'links', 'b'));
  await link(join(root, 'links', 'a'), join(root, 'd', 'also-a'));
  await link(join(root, longFile), join(root, 'links', 'to-long'));
  await writeFile(join(root, 'links', 'big-shared'), body(300_000, 99));
  await link(join(root, 'links', 'big-shared'), join(root, 'links', 'big-shared-2'));

  // owners: plain, saturating the 6-digit ustar field, needing PAX
  for (const [name, uid, gid] of [
    ['plain', 1000, 1000],
    ['saturated', 300_000, 262_144],
    ['pax', 3_000_000, 2_097_152],
  ] as const) {
    await writeFile(join(root, 'owners', name), name);
    await lchown(join(root, 'owners', name), uid, gid);
  }
  await symlink('plain', join(root, 'owners', 'link'));
  await lchown(join(root, 'owners', 'link'), 5, 6);

  // modes
  for (const [name, mode] of [
    ['zero', 0],
    ['setuid', 0o4755],
    ['setgid', 0o2711],
    ['private', 0o600],
  ] as const) {
    await writeFile(join(root, 'modes', name), name);
    await chmod(join(root, 'modes', name), mode);
  }
  await mkdir(join(root, 'modes', 'sticky'));
  await chmod(join(root, 'modes', 'sticky'), 0o1777);

  // devices and a fifo
  await mknod(join(root, 'dev', 'null'), S_IFCHR | 0o666, 1, 3);
  await mknod(join(root, 'dev', 'sda1'), S_IFBLK | 0o660, 8, 1);
  await mknod(join(root, 'dev', 'big-minor'), S_IFCHR | 0o600, 259, 65_537);
  await mknod(join(root, 'dev', 'fifo'), S_IFIFO | 0o644, 0, 0);

  // xattrs: text, binary (NUL, 0xff, '=' and '\n'), a capability, on a directory, on a symlink, one left out
  await writeFile(join(root, 'xattrs', 'f'), 'with xattrs');
  setXattr(join(root, 'xattrs', 'f'), 'user.text', Buffer.from('hello'));
  setXattr(join(root, 'xattrs', 'f'), 'user.bin', Buffer.from([0, 0xff, 0x3d, 0x0a, 0x80, 0x20, 1]));
  setXattr(join(root, 'xattrs', 'f'), 'user.empty', Buffer.alloc(0));
  setXattr(join(root, 'xattrs', 'f'), 'trusted.overlay.opaque', Buffer.from('y')); // not kept
  // vfs_cap_data v2: magic 0x02000000 | effective, permitted cap_net_bind_service, inheritable 0
  const cap = Buffer.alloc(20);
  cap.writeUInt32LE(0x02000001, 0);
  cap.writeUInt32LE(1 << 10, 4);
  await writeFile(join(root, 'xattrs', 'cap'), 'capable');
  setXattr(join(root, 'xattrs', 'cap'), 'security.capability', cap);
  setXattr(join(root, 'xattrs'), 'user.on-dir', Buffer.from('dir'));
  await symlink('f', join(root, 'xattrs', 'link'));
  setXattr(join(root, 'xattrs', 'link'), 'trusted.on-link', Buffer.from('link'));
  setXattr(join(root, 'xattrs', 'f'), 'user.' + 'n'.repeat(200), body(3000, 7)); // a long name and value

  // mtimes: set last, children before parents
  const times: Array<[string, number]> = [
    ['times/before-1970', -1000],
    ['times/before-1970-fraction', -1000.25],
    ['times/epoch', 0],
    ['times/fraction', T + 0.75],
    ['times/last-32-bit', 2 ** 31 - 1],
    ['times/after-2038', 2 ** 31 + 5],
    ['times/far-future', 4_102_444_800], // 2100
  ];
  for (const [p] of times) await writeFile(join(root, p), p);
  const all: string[] = [];
  const walk = (rel: string): void => {
    for (const n of readdirSync(join(root, rel))) {
      const p = rel ? `${rel}/${n}` : n;
      if (lstatSync(join(root, p)).isDirectory()) walk(p);
      all.push(p);
    }
  };
  walk('');
  for (const p of all) await lutimes(join(root, p), T, T);
  // a Date: Node takes a negative number of seconds for "now"
  for (const [p, mt] of times) await lutimes(join(root, p), T, new Date(mt * 1000));
  await lutimes(join(root, 'times'), T, T);
}
