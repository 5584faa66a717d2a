// ChainIDs as the image spec defines them: ChainID(L1) = DiffID(L1); ChainID(L1..n) = sha256(ChainID(L1..n-1) + " " + DiffID(Ln)).
import test from 'ava';
import { createHash } from 'node:crypto';
import { chainId, chainIds } from '../../../layers/model/digest.js';
import type { Digest } from '../../../layers/model/types.js';

const d = (s: string): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}`;

test('the ChainID of one layer is its DiffID, and of more the hash of the previous ChainID, a space and the DiffID', (t) => {
  const [a, b] = [d('a'), d('b')];
  t.is(chainId([a]), a);
  t.is(chainId([a, b]), d(`${a} ${b}`));
});

test('chainIds gives the ChainID of every prefix, equal to chainId of that prefix', (t) => {
  const ids = Array.from({ length: 130 }, (_, i) => d(String(i)));
  const all = chainIds(ids);
  t.is(all.length, ids.length);
  for (const i of [0, 1, 2, 64, 129]) t.is(all[i], chainId(ids.slice(0, i + 1)));
  t.deepEqual(chainIds([]), []);
});
