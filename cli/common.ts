// Helpers shared by command modules: opening the store, reading global flags.
import { InvalidInputError } from '../sys/errors.js';
import { setWarningSink } from '../sys/warnings.js';
import { defaultStoreRoot, Store } from '../layers/store/store.js';
import type { Compression } from '../layers/model/types.js';

export interface GlobalFlags {
  root?: string | string[];
  debug?: boolean;
  _?: string[];
}

/** openStore opens the store named by --root (the last one given wins), $TSBUILD_ROOT or the default location. */
export function openStore(flags: GlobalFlags): Promise<Store> {
  // what a layer could not carry over here (device nodes, rootless) is said once per message, on stderr
  const said = new Set<string>();
  setWarningSink((_code, message) => {
    if (said.has(message) || said.size > 100) return;
    said.add(message);
    process.stderr.write(`warning: ${message}\n`);
  });
  const root = Array.isArray(flags.root) ? flags.root.at(-1) : flags.root;
  return Store.open(root ?? defaultStoreRoot());
}

/** list turns a flag given zero, one or many times into an array of strings. */
export function list(v: unknown): string[] {
  if (v === undefined || v === null || v === false) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

/** compressionFlag checks --compression. */
export function compressionFlag(v: unknown): Compression {
  const s = String(v ?? 'gzip');
  if (s === 'gzip' || s === 'zstd' || s === 'none') return s;
  throw new InvalidInputError(`--compression must be gzip, zstd or none (got ${JSON.stringify(s)})`);
}

/** sourceDateEpoch reads SOURCE_DATE_EPOCH (seconds), or undefined. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v))
    throw new InvalidInputError(`SOURCE_DATE_EPOCH must be a number of seconds (got ${JSON.stringify(v)})`);
  return Number(v);
}

/** write prints a result line to stdout. */
export function out(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * unpackEntered extracts the snapshots of images a command just stored (by manifest digest), so that builds and runs
 * start at once. A failure is a warning: the image itself is stored.
 */
export async function unpackEntered(store: Store, digests: readonly string[]): Promise<void> {
  const [{ getImage }, { imageLayers }, { unpackImages }] = await Promise.all([
    import('../layers/store/image.js'),
    import('../layers/model/layer.js'),
    import('../unionfs/snapshot.js'),
  ]);
  try {
    const images = [];
    for (const d of new Set(digests)) images.push({ layers: imageLayers(await getImage(store, d)) });
    await unpackImages(store, images);
  } catch (e) {
    process.stderr.write(`warning: unpacking for builds and runs: ${(e as Error).message.split('\n')[0]}\n`);
  }
}
