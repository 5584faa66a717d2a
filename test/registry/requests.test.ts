// What goes over the wire, counted by a proxy: a second push uploads nothing, a push to another repository of the
// same registry mounts blobs instead of uploading them, and an image pulled from one repository mounts from it.
import test from 'ava';
import { haveRegistry, startRegistry } from '../helpers/registry.js';
import { isBlobData, startFaultProxy } from './fault-proxy.js';
import { anotherStore, busyboxImage, imageProblems, manifestOf, newCtx } from './util.js';

const rtest = haveRegistry ? test : test.skip;

rtest('a second push of the same image uploads no blob', async (t) => {
  const reg = await startRegistry(t);
  const proxy = await startFaultProxy(t, reg.port);
  const a = await newCtx(t);
  const name = `${proxy.host}/req/again:1`;
  const digest = await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  t.true(proxy.log.some(isBlobData), 'the first push uploads');
  proxy.log.length = 0;
  const r = await a.run(['push', name]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), digest);
  t.deepEqual(
    proxy.log.filter((q) => q.path.includes('/blobs/uploads/')).map((q) => `${q.method} ${q.path}`),
    [],
  );
  t.is(
    proxy.log.filter((q) => q.method === 'HEAD' && q.path.includes('/blobs/')).length,
    2,
    'one HEAD per blob (config and layer)',
  );
  t.regex(r.stderr, /0 blobs uploaded, 0 mounted, 2 already there/);
});

rtest('a push to another repository of the same registry mounts the blobs instead of uploading them', async (t) => {
  const reg = await startRegistry(t, { token: { users: { erin: 'pw' } } });
  const proxy = await startFaultProxy(t, reg.port);
  const a = await newCtx(t);
  await a.ok(['login', proxy.host, '-u', 'erin', '--password-stdin'], 'pw');
  const name = `${proxy.host}/team/source:1`;
  const digest = await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  proxy.log.length = 0;
  const dest = `${proxy.host}/team/dest:1`;
  t.is((await a.ok(['push', name, dest])).trim(), digest);
  const mounts = proxy.log.filter((q) => q.method === 'POST' && q.query.get('mount'));
  t.is(mounts.length, 2);
  t.true(mounts.every((q) => q.query.get('from') === 'team/source' && q.status === 201));
  t.deepEqual(
    proxy.log.filter(isBlobData).map((q) => `${q.method} ${q.path}`),
    [],
    'no blob data was sent',
  );
  const scopes = reg.tokenServer?.requests.at(-1)?.scopes ?? [];
  t.true(
    scopes.includes('repository:team/dest:pull,push') && scopes.includes('repository:team/source:pull'),
    `token scopes: ${scopes.join(' ')}`,
  );
  // and the mounted image is whole
  const b = await anotherStore(t, a);
  t.is((await b.ok(['pull', dest])).trim(), digest);
  t.deepEqual(await imageProblems(b.root, dest), []);
});

rtest('an image pulled from one repository is mounted from it when pushed to another', async (t) => {
  const reg = await startRegistry(t);
  const a = await newCtx(t);
  const name = `${reg.host}/lib/base:1`;
  const digest = await busyboxImage(t, a, name);
  await a.ok(['push', name]);
  const proxy = await startFaultProxy(t, reg.port);
  const b = await anotherStore(t, a);
  await b.ok(['pull', `${proxy.host}/lib/base:1`]);
  t.deepEqual(await imageProblems(b.root, `${proxy.host}/lib/base:1`), []);
  proxy.log.length = 0;
  const r = await b.run(['push', `${proxy.host}/lib/base:1`, `${proxy.host}/app/copy:1`]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), digest);
  t.is(proxy.log.filter((q) => q.query.get('mount') && q.query.get('from') === 'lib/base').length, 2);
  t.deepEqual(proxy.log.filter(isBlobData), []);
  t.deepEqual((await manifestOf(b.root, `${proxy.host}/lib/base:1`)).layers, (await manifestOf(a.root, name)).layers);
});
