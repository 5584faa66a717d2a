// Layer tars for the snapshot and merge tests (no ava import: snapshot-child.ts runs this outside ava), made with GNU tar from small trees; and a GNU tar "apply".
import { execFileSync, spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { sha256 } from '../../layers/model/digest.js';
import type { Digest } from '../../layers/model/types.js';

export interface TarLayer {
  diffId: Digest;
  file: string;
  open(): Promise<Readable>;
}

/** makeTar writes `files` (path → content) into a tree and tars it (GNU tar, sorted names) as `<dir>/<name>.tar`. */
export async function makeTar(dir: string, name: string, files: Record<string, string>): Promise<TarLayer> {
  const tree = join(dir, `${name}.tree`);
  await mkdir(tree, { recursive: true });
  for (const [p, content] of Object.entries(files)) {
    await mkdir(dirname(join(tree, p)), { recursive: true });
    await writeFile(join(tree, p), content);
  }
  const file = join(dir, `${name}.tar`);
  execFileSync('tar', [
    '--sort=name',
    '--mtime=@0',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '-C',
    tree,
    '-cf',
    file,
    '.',
  ]);
  const diffId = sha256(await readFile(file));
  return { diffId, file, open: async () => createReadStream(file) };
}

/** gnuTarApply extracts a tar stream into dir with GNU tar (no whiteout handling: enough for these tests). */
export function gnuTarApply(tar: Readable, dir: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('tar', ['-x', '-C', dir, '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    tar.on('error', (e) => {
      child.kill();
      reject(e);
    });
    child.stdin.on('error', () => {});
    tar.pipe(child.stdin);
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar -x exited with ${code}: ${stderr}`))));
  });
}
