import { getImage } from '../../layers/store/image.js';
import { imageLayers } from '../../layers/model/layer.js';
import { flatten } from '../../unionfs/flatten.js';
import { type GlobalFlags, openStore } from '../common.js';
import { stderrProgress } from '../progress.js';

export default async function unpack(name: string, dir: string, flags: GlobalFlags): Promise<void> {
  const store = await openStore(flags);
  const img = await getImage(store, name);
  const p = stderrProgress();
  await flatten({
    store,
    layers: imageLayers(img),
    dir,
    method: 'apply',
    onEvent: (e) => p.step(`layer ${e.index + 1}/${e.count} ${e.digest.slice(0, 19)}`),
    onWarn: p.warn,
  });
}
