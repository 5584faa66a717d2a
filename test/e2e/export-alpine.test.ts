// A real Alpine VM: bootstrap alpine:3.20, build the app on it (fixtures/export/alpine.Dockerfile), export, boot.
// Needs Alpine's mirror (dl-cdn.alpinelinux.org) for the minirootfs and for `apk add linux-virt`; when a 3-second
// HEAD request cannot reach it, the test is skipped (the Alpine configuration itself is covered offline by
// test/convert/recipe.test.ts and system-files).
import test from 'ava';
import { join } from 'node:path';
import { bootDisk } from '../../convert/boot.js';
import { newStoreRoot } from '../helpers/images.js';
import { isRoot, makeTempDir, removeDir, tsbuild } from '../helpers/index.js';
import {
  ALPINE_APP,
  APP_CONTEXT,
  APP_EXPECT,
  buildImage,
  buildOutput,
  imageProblems,
} from '../convert/export-fixtures.js';

const MIRROR = 'https://dl-cdn.alpinelinux.org/alpine/';

async function mirrorReachable(): Promise<boolean> {
  try {
    const r = await fetch(MIRROR, { method: 'HEAD', signal: AbortSignal.timeout(3_000) });
    return r.status < 500;
  } catch {
    return false;
  }
}

const reachable = isRoot && (await mirrorReachable());
const title = 'an Alpine app image exports with linux-virt, mkinitfs and OpenRC, and boots';
const alpineTest = reachable ? test.serial : test.serial.skip;

alpineTest(
  reachable ? title : `${title} (skipped: ${isRoot ? `${MIRROR} is unreachable` : 'needs root'})`,
  async (t) => {
    const store = await newStoreRoot(t);
    const b = await tsbuild(['--root', store, 'bootstrap', 'alpine:3.20']);
    t.is(b.code, 0, b.stderr);
    const app = await buildImage(store, { dockerfile: ALPINE_APP, context: APP_CONTEXT, tag: 'app:alpine' });
    t.is(app.code, 0, buildOutput(app));
    t.deepEqual(await imageProblems(store, 'app:alpine'), []);
    const out = await makeTempDir();
    t.teardown(() => removeDir(out));
    const disk = join(out, 'alpine.qcow2');
    const r = await tsbuild(['--root', store, 'export', 'app:alpine', '-o', disk]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stderr, /installing linux-virt mkinitfs openrc/);
    t.regex(r.stderr, /openrc service tsbuild-app/);
    const boot = await bootDisk({ disk, expect: new RegExp(APP_EXPECT), timeoutMs: 300_000 });
    t.is(boot.outcome, 'matched', boot.output.slice(-3000));
  },
);
