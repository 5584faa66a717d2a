// applyLayer asks the Host for privilege: on a FakeHost (no root needed) the recorded calls show that device nodes
// are made (host.mknod) and owners set (host.lchown) only when caps say so, and never by getuid().
import test, { type ExecutionContext } from 'ava';
import { constants as fsc } from 'node:fs';
import { Readable } from 'node:stream';
import { pack, type Header } from 'tar-stream';
import { FakeHost } from '../../../sys/fake-host.js';
import type { HostCaps } from '../../../sys/host.js';
import { applyLayer } from '../../../layers/tar/apply.js';
import { makeTempDir, removeDir } from '../../helpers/index.js';

async function layer(): Promise<Buffer> {
  const p = pack();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) out.push(c as Buffer);
  })();
  const entries: Array<Partial<Header> & { name: string }> = [
    { name: 'dev/', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
    { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3, uid: 0, gid: 0 },
    { name: 'home/', type: 'directory', mode: 0o755, uid: 0, gid: 0 },
    { name: 'home/app.conf', type: 'file', mode: 0o640, uid: 1234, gid: 5678 },
  ];
  for (const h of entries) {
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
      if (h.type === 'file') p.entry({ mtime: new Date(0), ...h } as Header, Buffer.from('x=1\n'), cb);
      else p.entry({ mtime: new Date(0), ...h } as Header, cb);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(out);
}

async function applyOn(
  t: ExecutionContext,
  caps: Partial<HostCaps>,
): Promise<{ host: FakeHost; warnings: string[]; root: string }> {
  const root = await makeTempDir('tsbuild-apply-host-');
  t.teardown(() => removeDir(root));
  const host = new FakeHost({ caps });
  const warnings: string[] = [];
  await applyLayer(Readable.from(await layer()), {
    root,
    host,
    writerThread: false,
    onWarn: (code) => warnings.push(code),
  });
  return { host, warnings, root };
}

test('an unprivileged host: no mknod, no lchown, the device is skipped with a warning', async (t) => {
  const { host, warnings } = await applyOn(t, { root: false, mknod: false, chown: false });
  t.deepEqual(host.callsOf('mknod'), []);
  t.deepEqual(host.callsOf('lchown'), []);
  t.deepEqual(warnings, ['device-skipped']);
});

test('a privileged host: the device through host.mknod, owners through host.lchown', async (t) => {
  const { host, warnings, root } = await applyOn(t, { uid: 0, gid: 0, root: true, mknod: true, chown: true });
  t.deepEqual(warnings, []);
  t.deepEqual(host.callsOf('mknod'), [
    { op: 'mknod', path: `${root}/dev/null`, mode: fsc.S_IFCHR | 0o666, major: 1, minor: 3 },
  ]);
  const owners = host.callsOf('lchown').map((c) => [c.path.slice(root.length), c.uid, c.gid]);
  t.deepEqual(owners, [
    ['/dev', 0, 0],
    ['/dev/null', 0, 0],
    ['/home', 0, 0],
    ['/home/app.conf', 1234, 5678],
  ]);
});

test("overlay whiteouts are made through host.mknod as char 0/0 whatever the host's caps", async (t) => {
  const root = await makeTempDir('tsbuild-apply-host-');
  t.teardown(() => removeDir(root));
  const p = pack();
  const out: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) out.push(c as Buffer);
  })();
  p.entry({ name: '.wh.gone', mtime: new Date(0) } as Header, Buffer.alloc(0));
  p.finalize();
  await done;
  const host = new FakeHost();
  await applyLayer(Readable.from(Buffer.concat(out)), { root, host, whiteouts: 'overlay' });
  t.deepEqual(host.callsOf('mknod'), [{ op: 'mknod', path: `${root}/gone`, mode: fsc.S_IFCHR, major: 0, minor: 0 }]);
});
