// The child of copy-memory.test.ts: a COPY of a big context directory the way a build step does it (select and
// hash the sources, copy them into a root, list what changed, write the layer tar from that change set), in a Node
// whose old space the test makes small. Prints the diffID of the layer and the number of changes.
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { hashSelection, selectSources } from '../../builder/steps/copy-select.js';
import { copyInto } from '../../builder/steps/copy-write.js';
import type { Change } from '../../layers/model/changeset.js';
import { tarFromChanges } from '../../layers/tar/create.js';
import { defaultHost } from '../../sys/host.js';

const [context, root, tmpDir] = process.argv.slice(2) as [string, string, string];
const from = { root: context, label: 'the build context', resetOwner: true };
const sel = selectSources(from, ['big/']);
await hashSelection(sel, true);
await copyInto(root, from, sel, { dest: '/big/', tmpDir, host: defaultHost(), mtime: 0 });
// every path of the copied tree is new: the change set an upperdir diff gives for it
const changes: Change[] = [];
const list = (rel: string): void => {
  for (const d of readdirSync(join(root, rel), { withFileTypes: true })) {
    const path = rel === '' ? d.name : `${rel}/${d.name}`;
    changes.push({ path, kind: 'add' });
    if (d.isDirectory()) list(path);
  }
};
list('');
const h = createHash('sha256');
for await (const chunk of tarFromChanges(root, changes, { sourceDateEpoch: 0 })) h.update(chunk as Buffer);
console.log(`sha256:${h.digest('hex')} ${changes.length}`);
