// Run by snapshot.test.ts in a child process: starts extracting a layer, says so, then hangs until killed.
import { ensureSnapshots } from '../../unionfs/snapshot.js';
import { gnuTarApply, makeTar } from './tar-fixtures.js';

const [storeRoot, work] = process.argv.slice(2) as [string, string];
const layer = await makeTar(work, 'hang', { 'big/file': 'partial' });
await ensureSnapshots({
  storeRoot,
  layers: [layer],
  apply: async (tar, dir) => {
    await gnuTarApply(tar, dir);
    process.stdout.write('extracting\n');
    await new Promise(() => setInterval(() => {}, 1000)); // killed here
  },
});
