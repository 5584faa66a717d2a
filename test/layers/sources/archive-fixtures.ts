// Archives for the load tests, built in code: OCI image layouts (as tsbuild save, skopeo and docker >= 25 write
// them) and legacy `docker save` archives (manifest.json + <id>/layer.tar, repeated layers as symlinks).
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';

export const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface TarEntry {
  name: string;
  body?: Buffer | string;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  linkname?: string;
}

/** tarOf packs entries (in the order given) into one uncompressed tar. */
export async function tarOf(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (b: unknown) => {
    chunks.push(b as Buffer);
  });
  const ended = new Promise<void>((resolve, reject) => {
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mode: type === 'directory' ? 0o755 : 0o644, mtime: new Date(0) };
    if (type === 'file')
      pack.entry(header, typeof e.body === 'string' ? Buffer.from(e.body) : (e.body ?? Buffer.alloc(0)));
    else pack.entry({ ...header, linkname: e.linkname ?? '' });
  }
  pack.finalize();
  await ended;
  return Buffer.concat(chunks);
}

/** A layer: its uncompressed tar (diffID) and the gzip blob an OCI archive carries. */
export interface TestLayer {
  tar: Buffer;
  diffId: string;
  blob: Buffer;
  digest: string;
}

export async function makeLayer(files: Record<string, string>): Promise<TestLayer> {
  const t = await tarOf(Object.entries(files).map(([name, body]) => ({ name, body })));
  const blob = gzipSync(t);
  return { tar: t, diffId: sha(t), blob, digest: sha(blob) };
}

export function configOf(layers: TestLayer[], cmd = ['/bin/sh']): Buffer {
  return Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: cmd },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }),
  );
}

/** An image of an OCI archive: its manifest bytes, the descriptor that points at them, and its blobs. */
export interface TestImage {
  name: string;
  manifest: Buffer;
  descriptor: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> };
  blobs: Map<string, Buffer>;
  config: Buffer;
}

export function ociImage(name: string, layers: TestLayer[], cmd?: string[]): TestImage {
  const config = configOf(layers, cmd);
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
        digest: l.digest,
        size: l.blob.length,
      })),
    }),
  );
  const blobs = new Map<string, Buffer>([
    [sha(manifest), manifest],
    [sha(config), config],
  ]);
  for (const l of layers) blobs.set(l.digest, l.blob);
  return {
    name,
    manifest,
    config,
    blobs,
    descriptor: {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: sha(manifest),
      size: manifest.length,
      annotations: {
        'io.containerd.image.name': `docker.io/library/${name}`,
        'org.opencontainers.image.ref.name': name,
      },
    },
  };
}

/**
 * writeOciArchive writes an OCI layout tar of the images. `index` replaces the index.json document, `manifestJson`
 * adds docker's manifest.json (raw JSON text), `extra` adds or replaces entries (by name).
 */
export async function writeOciArchive(
  dir: string,
  file: string,
  images: TestImage[],
  opts: { index?: unknown; manifestJson?: string; extra?: TarEntry[] } = {},
): Promise<string> {
  const blobs = new Map<string, Buffer>();
  for (const img of images) for (const [d, b] of img.blobs) blobs.set(d, b);
  const entries: TarEntry[] = [
    { name: 'blobs/', type: 'directory' },
    { name: 'blobs/sha256/', type: 'directory' },
  ];
  for (const [d, b] of blobs) entries.push({ name: `blobs/sha256/${d.slice(7)}`, body: b });
  const index = opts.index ?? {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: images.map((i) => i.descriptor),
  };
  entries.push({ name: 'index.json', body: typeof index === 'string' ? index : JSON.stringify(index) });
  entries.push({ name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' });
  if (opts.manifestJson !== undefined) entries.push({ name: 'manifest.json', body: opts.manifestJson });
  for (const e of opts.extra ?? []) {
    const at = entries.findIndex((x) => x.name === e.name);
    if (at >= 0) entries[at] = e;
    else entries.push(e);
  }
  const path = join(dir, file);
  await writeFile(path, await tarOf(entries));
  return path;
}

/**
 * writeDockerArchive writes a legacy `docker save` archive: <id>.json configs, <layer id>/layer.tar, manifest.json.
 * A layer already written by an earlier image becomes a symlink `<new id>/layer.tar -> ../<first id>/layer.tar`,
 * as docker writes it. `manifestJson` replaces manifest.json (raw text).
 */
export async function writeDockerArchive(
  dir: string,
  file: string,
  images: Array<{ tags: string[]; layers: TestLayer[] }>,
  opts: { manifestJson?: string } = {},
): Promise<string> {
  const entries: TarEntry[] = [];
  const first = new Map<string, string>();
  const manifest: Array<{ Config: string; RepoTags: string[]; Layers: string[] }> = [];
  for (const [i, img] of images.entries()) {
    const config = configOf(img.layers, ['/bin/echo', String(i)]);
    const layerPaths: string[] = [];
    for (const [j, l] of img.layers.entries()) {
      const id = sha(`${i}/${j}/${l.diffId}`).slice(7);
      entries.push({ name: `${id}/`, type: 'directory' });
      const seen = first.get(l.diffId);
      if (seen) entries.push({ name: `${id}/layer.tar`, type: 'symlink', linkname: `../${seen}/layer.tar` });
      else {
        entries.push({ name: `${id}/layer.tar`, body: l.tar });
        first.set(l.diffId, id);
      }
      entries.push({ name: `${id}/VERSION`, body: '1.0' });
      layerPaths.push(`${id}/layer.tar`);
    }
    const configName = `${sha(config).slice(7)}.json`;
    entries.push({ name: configName, body: config });
    manifest.push({ Config: configName, RepoTags: img.tags, Layers: layerPaths });
  }
  entries.push({ name: 'manifest.json', body: opts.manifestJson ?? JSON.stringify(manifest) });
  const path = join(dir, file);
  await writeFile(path, await tarOf(entries));
  return path;
}
