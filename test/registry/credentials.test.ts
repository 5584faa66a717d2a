// Units of saved credentials and registry names: docker config.json lookups (URL-form keys, Docker Hub's key,
// identity tokens), writes that keep other members and stay private, malformed files, and name normalization.
import test from 'ava';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { getCredentials, saveCredentials } from '../../layers/registry/credentials.js';
import { credentialKey, isLoopback, normalizeRegistry, wireHost } from '../../layers/registry/endpoint.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

async function configDir(t: { teardown(fn: () => unknown): void }, content?: unknown): Promise<NodeJS.ProcessEnv> {
  const dir = await makeTempDir('tsbuild-cfg-');
  t.teardown(() => removeDir(dir));
  if (content !== undefined)
    await writeFile(join(dir, 'config.json'), typeof content === 'string' ? content : JSON.stringify(content));
  return { DOCKER_CONFIG: dir, PATH: process.env.PATH ?? '' };
}

const b64 = (s: string): string => Buffer.from(s).toString('base64');

test('credentials saved under a URL-form key are found for the bare host', async (t) => {
  const env = await configDir(t, { auths: { 'https://127.0.0.1:5000/v2/': { auth: b64('u:p:w') } } });
  t.deepEqual(await getCredentials('127.0.0.1:5000', { env }), { username: 'u', password: 'p:w' });
  t.is(await getCredentials('127.0.0.1:5001', { env }), undefined);
});

test('Docker Hub credentials live under https://index.docker.io/v1/', async (t) => {
  const env = await configDir(t, { auths: { 'https://index.docker.io/v1/': { auth: b64('hub:pw') } } });
  t.deepEqual(await getCredentials('docker.io', { env }), { username: 'hub', password: 'pw' });
  t.is(credentialKey('docker.io'), 'https://index.docker.io/v1/');
  t.is(wireHost('docker.io'), 'registry-1.docker.io');
});

test('an identity token is read in place of the password', async (t) => {
  const env = await configDir(t, { auths: { 'r.example': { auth: b64('me:'), identitytoken: 'refresh-me' } } });
  t.deepEqual(await getCredentials('r.example', { env }), { username: 'me', identityToken: 'refresh-me' });
});

test('saving keeps the other members of config.json and makes the file private', async (t) => {
  const env = await configDir(t, {
    auths: { 'other.example': { auth: b64('o:o') }, 'http://r.example:5000': { auth: b64('old:old') } },
    proxies: { x: 1 },
  });
  await saveCredentials('r.example:5000', { username: 'new', password: 'pw' }, { env });
  const path = join(env.DOCKER_CONFIG as string, 'config.json');
  const doc = JSON.parse(await readFile(path, 'utf8')) as { auths: Record<string, { auth: string }>; proxies: unknown };
  t.deepEqual(Object.keys(doc.auths).sort(), ['other.example', 'r.example:5000'], 'the old URL-form key is replaced');
  t.is(Buffer.from(doc.auths['r.example:5000']?.auth ?? '', 'base64').toString(), 'new:pw');
  t.deepEqual(doc.proxies, { x: 1 });
  t.is((await stat(path)).mode & 0o777, 0o600);
});

test('a malformed config.json is an error naming the file', async (t) => {
  const env = await configDir(t, '{ not json');
  await t.throwsAsync(getCredentials('r.example', { env }), {
    code: 'E_INVALID',
    message: /config\.json is not valid JSON/,
  });
});

test('a missing credential helper is reported by name', async (t) => {
  const env = await configDir(t, { credHelpers: { 'r.example': 'no-such-helper-tsb' } });
  await t.throwsAsync(getCredentials('r.example', { env }), {
    message: /docker-credential-no-such-helper-tsb is not installed/,
  });
});

const normalizes = test.macro({
  exec(t, input: string, expected: string) {
    t.is(normalizeRegistry(input), expected);
  },
  title: (_p, input: string, expected: string) => `the registry ${JSON.stringify(input)} is ${expected}`,
});
test(normalizes, 'https://Registry.Example.com:5000/v2/', 'registry.example.com:5000');
test(normalizes, 'index.docker.io', 'docker.io');
test(normalizes, 'https://index.docker.io/v1/', 'docker.io');
test(normalizes, '[::1]:5000', '[::1]:5000');

test('invalid registry names are refused', (t) => {
  for (const bad of ['', 'a b', 'host:port:x', '-x.example'])
    t.throws(() => normalizeRegistry(bad), { code: 'E_INVALID' }, bad);
});

test('plain HTTP is allowed only for loopback hosts', (t) => {
  for (const h of ['localhost:5000', '127.0.0.1', '127.1.2.3:80', '[::1]:5000', 'app.localhost'])
    t.true(isLoopback(h), h);
  for (const h of ['registry.example.com', '10.0.0.1:5000', '128.0.0.1', 'localhost.example.com', '[::2]'])
    t.false(isLoopback(h), h);
});
