// login/logout against real registries: credentials are verified before they are saved, a wrong password saves
// nothing, logout removes them, and credential helpers (credsStore) are used through docker-credential-<name>.
import test from 'ava';
import { existsSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir, removeDir } from '../helpers/index.js';
import { haveRegistry, type RegistryOptions, startRegistry } from '../helpers/registry.js';
import { busyboxImage, newCtx } from './util.js';

const rtest = haveRegistry ? test : test.skip;

const wrongPassword = test.macro({
  async exec(t, registry: RegistryOptions, message: RegExp) {
    const reg = await startRegistry(t, registry);
    const a = await newCtx(t);
    const r = await a.run(['login', reg.host, '-u', 'frank', '--password-stdin'], 'not-the-password\n');
    t.is(r.code, 1);
    t.regex(r.stderr, message);
    t.is(r.stderr.split('\n').filter((l) => l.startsWith('error:')).length, 1, 'one error line');
    t.regex(r.stderr, /hint: /);
    t.false(existsSync(join(a.dockerConfig, 'config.json')), 'nothing is saved');
    t.notRegex(r.stdout, /Login Succeeded/);
  },
  title: (kind = '') => `a wrong password with ${kind} fails login with a clear error and saves nothing`,
});

rtest(
  'htpasswd Basic auth',
  wrongPassword,
  { htpasswd: { frank: 'right' } },
  /error: logging in to 127\.0\.0\.1:\d+: 127\.0\.0\.1:\d+ refused the credentials \(HTTP 401\)/,
);
rtest(
  'token auth',
  wrongPassword,
  { token: { users: { frank: 'right' } } },
  /error: the token server of 127\.0\.0\.1:\d+ refused the username or password/,
);

rtest('logout removes saved credentials, and a second logout says there were none', async (t) => {
  const reg = await startRegistry(t, { htpasswd: { gina: 'pw' } });
  const a = await newCtx(t);
  t.regex(await a.ok(['login', `http://${reg.host}/`, '-u', 'gina', '--password-stdin'], 'pw'), /Login Succeeded/);
  const cfg = JSON.parse(await readFile(join(a.dockerConfig, 'config.json'), 'utf8')) as {
    auths: Record<string, unknown>;
  };
  t.deepEqual(Object.keys(cfg.auths), [reg.host], 'the key is the bare host, whatever form was typed');
  t.regex(await a.ok(['logout', reg.host]), /Removed login credentials for 127\.0\.0\.1/);
  const after = JSON.parse(await readFile(join(a.dockerConfig, 'config.json'), 'utf8')) as {
    auths: Record<string, unknown>;
  };
  t.deepEqual(after.auths, {});
  t.regex(await a.ok(['logout', reg.host]), /Not logged in to 127\.0\.0\.1/);
});

rtest('a push to a registry that needs credentials, without login, fails and says to log in', async (t) => {
  const reg = await startRegistry(t, { htpasswd: { hank: 'pw' } });
  const a = await newCtx(t);
  const name = `${reg.host}/locked/img:1`;
  await busyboxImage(t, a, name);
  const r = await a.run(['push', name]);
  t.is(r.code, 1);
  t.regex(r.stderr, /error: pushing blob sha256:[a-f0-9]{64} to 127\.0\.0\.1:\d+\/locked\/img: .*HTTP 401/);
  t.regex(r.stderr, /hint: log in first: tsbuild login 127\.0\.0\.1:\d+/);
});

rtest('credentials go through the credsStore helper: login stores, push reads, logout erases', async (t) => {
  const reg = await startRegistry(t, { htpasswd: { iris: 'helper-pw' } });
  const a = await newCtx(t);
  const bin = await makeTempDir('tsbuild-credhelper-');
  t.teardown(() => removeDir(bin));
  const vault = join(bin, 'vault.json');
  // a tiny helper speaking the docker-credential protocol, keeping secrets in a JSON file
  await writeFile(
    join(bin, 'docker-credential-tsbtest'),
    `#!/usr/bin/env node
const fs = require('fs');
const vault = ${JSON.stringify(vault)};
const db = fs.existsSync(vault) ? JSON.parse(fs.readFileSync(vault, 'utf8')) : {};
const input = fs.readFileSync(0, 'utf8').trim();
const verb = process.argv[2];
fs.appendFileSync(vault + '.log', verb + ' ' + (verb === 'store' ? JSON.parse(input).ServerURL : input) + '\\n');
if (verb === 'get') {
  if (!db[input]) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
  process.stdout.write(JSON.stringify({ ServerURL: input, Username: db[input].Username, Secret: db[input].Secret }));
} else if (verb === 'store') {
  const c = JSON.parse(input); db[c.ServerURL] = c; fs.writeFileSync(vault, JSON.stringify(db));
} else if (verb === 'erase') {
  if (!db[input]) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
  delete db[input]; fs.writeFileSync(vault, JSON.stringify(db));
}
`,
  );
  await chmod(join(bin, 'docker-credential-tsbtest'), 0o755);
  await writeFile(
    join(a.dockerConfig, 'config.json'),
    JSON.stringify({ credsStore: 'tsbtest', other: { kept: true } }),
  );
  a.env.PATH = `${bin}:${process.env.PATH}`;

  t.regex(await a.ok(['login', reg.host, '-u', 'iris', '--password-stdin'], 'helper-pw'), /Login Succeeded/);
  const cfg = JSON.parse(await readFile(join(a.dockerConfig, 'config.json'), 'utf8')) as Record<string, unknown>;
  t.deepEqual(
    cfg,
    { credsStore: 'tsbtest', other: { kept: true }, auths: { [reg.host]: {} } },
    'no secret in config.json; other keys kept',
  );
  const db = JSON.parse(await readFile(vault, 'utf8')) as Record<string, { Username: string; Secret: string }>;
  t.like(db[reg.host], { Username: 'iris', Secret: 'helper-pw' });

  const name = `${reg.host}/helped/img:1`;
  const digest = await busyboxImage(t, a, name);
  t.is((await a.ok(['push', name])).trim(), digest);
  t.regex(await readFile(`${vault}.log`, 'utf8'), new RegExp(`^get ${reg.host.replace(/\./g, '\\.')}$`, 'm'));

  await a.ok(['logout', reg.host]);
  t.deepEqual(JSON.parse(await readFile(vault, 'utf8')), {});
});
