import test from 'ava';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Ajv04 from 'ajv-draft-04';
import { busyboxAvailable, makeBusyboxRootfs } from '../../fixtures/busybox.js';
import { runtimeConfig } from '../../runtime/bundle.js';
import { processSpec, type ProcessSpecOptions, type RunSpec } from '../../runtime/spec.js';
import { which } from '../../sys/exec.js';
import { isRoot, makeTempDir, removeDir, repoRoot } from '../helpers/index.js';

const schemaDir = join(repoRoot, '..', 'shared', 'corpora', 'runtime-spec-schema');
const haveSchemas = existsSync(join(schemaDir, 'config-schema.json'));
const schemaTest = haveSchemas ? test : (test.skip as typeof test);

let validator: ((doc: unknown) => string[]) | undefined;
function validate(doc: unknown): string[] {
  if (!validator) {
    // draft-04 schemas that point at each other by file name: give each an id so that relative $refs resolve.
    const ajv = new Ajv04.default({ allErrors: true, strict: false, validateFormats: false });
    for (const f of readdirSync(schemaDir).filter((n) => n.endsWith('.json'))) {
      const schema = JSON.parse(readFileSync(join(schemaDir, f), 'utf8')) as Record<string, unknown>;
      delete schema.$schema;
      schema.id = `https://runtime-spec.invalid/schema/${f}`;
      ajv.addSchema(schema);
    }
    const check = ajv.getSchema('https://runtime-spec.invalid/schema/config-schema.json');
    if (!check) throw new Error('config-schema.json did not load');
    validator = (d) => (check(d) ? [] : (check.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message ?? ''}`));
  }
  return validator(doc);
}

function makeSpec(rootfs: string, opts: Partial<ProcessSpecOptions> = {}): RunSpec {
  return processSpec({ config: { Cmd: ['sh'] }, rootfs, hostname: 'bundle-test', ...opts });
}

schemaTest(
  'a plain config is valid against the OCI runtime-spec schema (skipped when ../shared/corpora is absent)',
  (t) => {
    t.deepEqual(validate(runtimeConfig(makeSpec('/tmp/rootfs'))), []);
  },
);

schemaTest(
  'a config using every option is valid against the OCI runtime-spec schema (skipped when ../shared/corpora is absent)',
  (t) => {
    const spec: RunSpec = {
      ...makeSpec('/tmp/rootfs'),
      user: { uid: 1000, gid: 50, additionalGids: [10, 20] },
      tty: true,
      network: 'host',
      mounts: [{ source: '/srv', destination: '/data', readonly: true }],
      extraFiles: { '/etc/hosts': '/tmp/hosts' },
      limits: { memory: 64 << 20, pids: 20, cpus: 1.5 },
      readonlyRootfs: true,
    };
    t.deepEqual(validate(runtimeConfig(spec)), []);
  },
);

schemaTest('the schema check can fail (skipped when ../shared/corpora is absent)', (t) => {
  const bad = runtimeConfig(makeSpec('/tmp/rootfs')) as { process: { user: { uid: unknown } } };
  bad.process.user.uid = 'root';
  t.notDeepEqual(validate(bad), []);
});

test('the config carries the namespaces, masked paths, limits and capabilities of the spec', (t) => {
  const c = runtimeConfig({ ...makeSpec('/r', { user: '0' }), limits: { memory: 1024, pids: 5 } }) as {
    linux: {
      namespaces: Array<{ type: string }>;
      maskedPaths: string[];
      readonlyPaths: string[];
      resources: { memory: unknown; pids: unknown };
    };
    process: { capabilities: { bounding: string[] }; noNewPrivileges: boolean };
    root: { path: string };
  };
  t.deepEqual(c.linux.namespaces.map((n) => n.type).sort(), ['ipc', 'mount', 'network', 'pid', 'uts']);
  t.true(c.linux.maskedPaths.includes('/proc/kcore'));
  t.true(c.linux.readonlyPaths.includes('/proc/sys'));
  t.deepEqual(c.linux.resources.memory, { limit: 1024, swap: 1024 });
  t.deepEqual(c.linux.resources.pids, { limit: 5 });
  t.true(c.process.capabilities.bounding.includes('CAP_NET_BIND_SERVICE'));
  t.true(c.process.noNewPrivileges);
  t.is(c.root.path, '/r');
});

const runcTest = isRoot && busyboxAvailable() && which('runc') ? test.serial : (test.serial.skip as typeof test.serial);

runcTest('runc runs a bundle written from runtimeConfig and prints what the command prints', async (t) => {
  const bundle = await makeTempDir('tsbuild-bundle-');
  t.teardown(() => removeDir(bundle));
  const rootfs = join(bundle, 'rootfs');
  await makeBusyboxRootfs(rootfs);
  chmodSync(bundle, 0o755);
  const spec = makeSpec(rootfs, {
    cmd: [
      'sh',
      '-c',
      'echo hello from runc; hostname; id -u; cat /proc/1/cmdline | tr "\\0" " "; echo; ls /sys/class/net; pwd',
    ],
    user: 'user',
    workdir: '/home/user',
    limits: { pids: 50 },
  });
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(runtimeConfig(spec), null, 2));
  const id = `tsbuild-test-${process.pid}`;
  t.teardown(() => {
    spawnSync('runc', ['delete', '--force', id], { stdio: 'ignore' });
  });
  const r = spawnSync('runc', ['run', '--bundle', bundle, id], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, 'hello from runc\nbundle-test\n1000\nsh -c ' + spec.args[2] + ' \nlo\n/home/user\n');
});
