// `--add-host NAME:host-gateway` (issue 12): the name resolves in every RUN to an address at which the step reaches
// the host (builder/steps/host-gateway.ts); from the step's own network a service the host listens with on all
// interfaces answers there. As root on a busybox base for the build; the address choice is pure.
import test from 'ava';
import { createServer, type Server } from 'node:net';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from '../../../builder/build.js';
import { hostGatewayIp, resolveHostGateway } from '../../../builder/steps/host-gateway.js';
import { hostsText } from '../../../builder/steps/run.js';
import { parseAddHosts } from '../../../cli/commands/build.js';
import { getImage } from '../../../layers/store/image.js';
import { imageLayers } from '../../../layers/model/layer.js';
import { which } from '../../../sys/exec.js';
import { flatten } from '../../../unionfs/flatten.js';
import { makeTempDir, removeDir, rootTest } from '../../helpers/index.js';
import { busyboxStore } from '../build-harness.js';

const eth = { eth0: [{ address: '192.0.2.7', family: 'IPv4', internal: false }] } as never;
const loOnly = { lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true }] } as never;

test("host-gateway is the host's first non-loopback IPv4 address, whatever the network", (t) => {
  for (const n of ['default', 'none', 'host'] as const) t.is(hostGatewayIp(n, eth), '192.0.2.7');
});

test('host-gateway on a host with only loopback is 127.0.0.1 under --network host and an error otherwise', (t) => {
  t.is(hostGatewayIp('host', loOnly), '127.0.0.1');
  t.throws(() => hostGatewayIp('default', loOnly), { message: /host-gateway.*no non-loopback IPv4/ });
});

test('a hosts file keeps its other entries and gets the address in place of host-gateway', (t) => {
  const text = hostsText([
    { host: 'gw', ip: 'host-gateway' },
    { host: 'db', ip: '10.1.2.3' },
  ]);
  const out = resolveHostGateway(text, 'host');
  t.notRegex(out, /host-gateway/);
  t.regex(out, /^\d+\.\d+\.\d+\.\d+\tgw$/m);
  t.regex(out, /^10\.1\.2\.3\tdb$/m);
});

test('the CLI accepts --add-host NAME:host-gateway', (t) => {
  t.deepEqual(parseAddHosts(['gw:host-gateway', 'x=host-gateway']), [
    { host: 'gw', ip: 'host-gateway' },
    { host: 'x', ip: 'host-gateway' },
  ]);
  t.throws(() => parseAddHosts(['gw:gateway']), { message: /not an IP address/ });
});

const slirp = which('slirp4netns') !== undefined;
(slirp ? rootTest : rootTest.skip)(
  `a RUN in its own network reaches the host's service through NAME:host-gateway${slirp ? '' : ' (skipped: no slirp4netns)'}`,
  async (t) => {
    const server: Server = createServer((s) => s.end('host-secret\n'));
    await new Promise<void>((r) => server.listen(0, '0.0.0.0', r));
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
    const port = (server.address() as { port: number }).port;
    const store = await busyboxStore(t);
    const ctx = await makeTempDir('tsbuild-addhost-');
    t.teardown(() => removeDir(ctx));
    writeFileSync(
      join(ctx, 'Dockerfile'),
      `FROM busybox:test\nRUN nc -w 5 gw ${port} > /answer\nRUN --network=none grep -w gw /etc/hosts > /hosts-none\n`,
    );
    await build({
      store,
      context: ctx,
      tags: ['addhost:1'],
      network: 'default',
      addHosts: [{ host: 'gw', ip: 'host-gateway' }],
    });
    const dir = await makeTempDir('tsbuild-addhost-root-');
    t.teardown(() => removeDir(dir));
    const image = await getImage(store, 'addhost:1');
    await flatten({ store, layers: imageLayers(image), dir: join(dir, 'r'), method: 'apply' });
    t.is(readFileSync(join(dir, 'r/answer'), 'utf8'), 'host-secret\n');
    t.is(readFileSync(join(dir, 'r/hosts-none'), 'utf8'), `${hostGatewayIp('none')}\tgw\n`);
  },
);
