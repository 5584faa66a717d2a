import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidInputError } from '../../sys/errors.js';
import { getImage } from '../../layers/store/image.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { runtimeConfig, runtimeConfigJson } from '../../runtime/bundle.js';
import { processSpec } from '../../runtime/spec.js';
import { type GlobalFlags, list, openStore } from '../common.js';
import { stderrProgress } from '../progress.js';

export default async function bundle(
  name: string,
  dir: string,
  flags: GlobalFlags & { user?: string | number; env?: unknown; workdir?: string; network?: string },
): Promise<void> {
  const network = flags.network ?? 'none';
  if (network !== 'none' && network !== 'host') throw new InvalidInputError('--network must be none or host');
  await mkdir(dir, { recursive: true });
  if ((await readdir(dir)).length) throw new InvalidInputError(`${dir} is not empty`);
  const store = await openStore(flags);
  const image = await getImage(store, name);
  const p = stderrProgress();
  const rootfs = join(dir, 'rootfs');
  await flatten({
    store,
    layers: imageLayers(image),
    dir: rootfs,
    method: 'apply',
    onEvent: (e) => p.step(`layer ${e.index + 1}/${e.count}`),
    onWarn: p.warn,
  });
  const spec = processSpec({
    config: image.config.config ?? {},
    rootfs,
    cmd: (flags._ ?? []).map(String),
    env: list(flags.env),
    ...(flags.user !== undefined ? { user: String(flags.user) } : {}),
    ...(flags.workdir !== undefined ? { workdir: String(flags.workdir) } : {}),
    network,
  });
  const config = runtimeConfig(spec) as { root: { path: string } };
  config.root.path = 'rootfs'; // relative, so the bundle can move
  await writeFile(join(dir, 'config.json'), runtimeConfigJson(config));
}
