// Units of registry auth: WWW-Authenticate parsing, scope merging, and the Authenticator's token flows
// (GET with Basic, anonymous, OAuth2 POST refresh with fallback, caching per scope set, expiry, hostile replies).
import test from 'ava';
import { Authenticator, mergeScopes, parseChallenges, type TokenFetch } from '../../layers/registry/auth.js';

const parses = test.macro({
  exec(t, header: string, expected: ReturnType<typeof parseChallenges>) {
    t.deepEqual(parseChallenges(header), expected);
  },
  title: (provided = '') => `parseChallenges reads ${provided}`,
});

test(
  'a Bearer challenge with quoted parameters',
  parses,
  'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:samalba/my-app:pull,push"',
  [
    {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.example/token',
        service: 'registry.example',
        scope: 'repository:samalba/my-app:pull,push',
      },
    },
  ],
);
test('a Basic challenge in another case', parses, 'BASIC Realm=registry', [
  { scheme: 'basic', params: { realm: 'registry' } },
]);
test('two challenges in one header', parses, 'Basic realm="a", Bearer realm="https://t/x",error="insufficient_scope"', [
  { scheme: 'basic', params: { realm: 'a' } },
  { scheme: 'bearer', params: { realm: 'https://t/x', error: 'insufficient_scope' } },
]);
test('escaped quotes inside a value', parses, 'Bearer realm="a\\"b",service=x', [
  { scheme: 'bearer', params: { realm: 'a"b', service: 'x' } },
]);
test('garbage as no challenge', parses, '=== ,,, "', []);

test('mergeScopes joins the actions of one repository and keeps others apart', (t) => {
  t.deepEqual(mergeScopes(['repository:a:pull'], ['repository:a:push', 'repository:b:pull']), [
    'repository:a:pull,push',
    'repository:b:pull',
  ]);
  t.deepEqual(mergeScopes(['repository:localhost:5000/x:pull'], ['repository:localhost:5000/x:push']), [
    'repository:localhost:5000/x:pull,push',
  ]);
});

interface Call {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body?: string;
}

function fakeRealm(answer: (c: Call) => { status: number; body?: unknown }): { fetch: TokenFetch; calls: Call[] } {
  const calls: Call[] = [];
  const fetch: TokenFetch = async (req) => {
    const c: Call = {
      method: req.method,
      url: req.url,
      headers: req.headers,
      ...(req.body ? { body: req.body.toString() } : {}),
    };
    calls.push(c);
    const a = answer(c);
    return {
      status: a.status,
      body: Buffer.from(a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body)),
    };
  };
  return { fetch, calls };
}

const bearer = 'Bearer realm="http://127.0.0.1:1/token",service="svc"';

test('a token is fetched with GET, service, one scope parameter per scope, and Basic credentials', async (t) => {
  const realm = fakeRealm(() => ({ status: 200, body: { token: 'tok1' } }));
  const auth = new Authenticator({ registry: 'r', credentials: { username: 'u', password: 'p' }, fetch: realm.fetch });
  auth.onChallenge(bearer, []);
  t.is(await auth.authorization(['repository:a:pull', 'repository:b:pull']), 'Bearer tok1');
  const c = realm.calls[0] as Call;
  t.is(c.method, 'GET');
  t.is(c.url.searchParams.get('service'), 'svc');
  t.deepEqual(c.url.searchParams.getAll('scope'), ['repository:a:pull', 'repository:b:pull']);
  t.is(c.headers.Authorization, `Basic ${Buffer.from('u:p').toString('base64')}`);
});

test('without credentials the token request is anonymous', async (t) => {
  const realm = fakeRealm(() => ({ status: 200, body: { access_token: 'anon' } }));
  const auth = new Authenticator({ registry: 'r', fetch: realm.fetch });
  auth.onChallenge(bearer, []);
  t.is(await auth.authorization(['repository:a:pull']), 'Bearer anon');
  t.is(realm.calls[0]?.headers.Authorization, undefined);
});

test('tokens are cached per scope set, shared by concurrent requests, and fetched again after expiry', async (t) => {
  let now = 1_000_000;
  let n = 0;
  const realm = fakeRealm(() => ({ status: 200, body: { token: `t${++n}`, expires_in: 60 } }));
  const auth = new Authenticator({ registry: 'r', fetch: realm.fetch, now: () => now });
  auth.onChallenge(bearer, []);
  const both = await Promise.all([
    auth.authorization(['repository:a:pull']),
    auth.authorization(['repository:a:pull']),
  ]);
  t.deepEqual(both, ['Bearer t1', 'Bearer t1']);
  t.is(await auth.authorization(['repository:b:pull']), 'Bearer t2', 'another scope set, another token');
  t.is(await auth.authorization(['repository:a:pull']), 'Bearer t1');
  now += 61_000;
  t.is(await auth.authorization(['repository:a:pull']), 'Bearer t3', 'expired: fetched again');
  t.is(realm.calls.length, 3);
});

test('an identity token is exchanged with the OAuth2 refresh_token POST', async (t) => {
  const realm = fakeRealm(() => ({ status: 200, body: { access_token: 'fresh', refresh_token: 'rt2' } }));
  const auth = new Authenticator({ registry: 'r', credentials: { identityToken: 'rt1' }, fetch: realm.fetch });
  auth.onChallenge(bearer, []);
  t.is(await auth.authorization(['repository:a:pull,push']), 'Bearer fresh');
  const c = realm.calls[0] as Call;
  t.is(c.method, 'POST');
  const form = new URLSearchParams(c.body);
  t.is(form.get('grant_type'), 'refresh_token');
  t.is(form.get('refresh_token'), 'rt1');
  t.is(form.get('service'), 'svc');
  t.is(form.get('scope'), 'repository:a:pull,push');
  t.is(auth.refreshToken, 'rt2', 'a rotated refresh token is kept');
});

test('a realm without POST support falls back to GET when a password is known', async (t) => {
  const realm = fakeRealm((c) => (c.method === 'POST' ? { status: 405 } : { status: 200, body: { token: 'viaGet' } }));
  const auth = new Authenticator({
    registry: 'r',
    credentials: { username: 'u', password: 'p', identityToken: 'rt' },
    fetch: realm.fetch,
  });
  auth.onChallenge(bearer, []);
  t.is(await auth.authorization([]), 'Bearer viaGet');
  t.deepEqual(
    realm.calls.map((c) => c.method),
    ['POST', 'GET'],
  );
});

test('refused credentials and hostile token replies become AuthErrors', async (t) => {
  const refused = new Authenticator({
    registry: 'r',
    credentials: { username: 'u', password: 'bad' },
    fetch: fakeRealm(() => ({ status: 401 })).fetch,
  });
  refused.onChallenge(bearer, []);
  await t.throwsAsync(refused.authorization([]), { code: 'E_AUTH', message: /refused the username or password/ });
  for (const body of ['not json', { token: 'has space\r\nX-Injected: 1' }, { token: 42 }, {}]) {
    const auth = new Authenticator({ registry: 'r', fetch: fakeRealm(() => ({ status: 200, body })).fetch });
    auth.onChallenge(bearer, []);
    await t.throwsAsync(auth.authorization([]), { code: 'E_AUTH' }, JSON.stringify(body));
  }
});

test('an insufficient_scope challenge adds its scope to the next token request', async (t) => {
  const realm = fakeRealm(() => ({ status: 200, body: { token: 'x' } }));
  const auth = new Authenticator({ registry: 'r', fetch: realm.fetch });
  const next = auth.onChallenge(`${bearer},scope="repository:src:pull",error="insufficient_scope"`, [
    'repository:dst:pull,push',
  ]);
  t.deepEqual(next, ['repository:dst:pull,push', 'repository:src:pull']);
});

test('Basic challenges are answered with the credentials, and without them not at all', async (t) => {
  const withCreds = new Authenticator({
    registry: 'r',
    credentials: { username: 'a', password: 'b:c' },
    fetch: fakeRealm(() => ({ status: 500 })).fetch,
  });
  withCreds.onChallenge('Basic realm="x"', []);
  t.is(await withCreds.authorization(['repository:a:pull']), `Basic ${Buffer.from('a:b:c').toString('base64')}`);
  const without = new Authenticator({ registry: 'r', fetch: fakeRealm(() => ({ status: 500 })).fetch });
  without.onChallenge('Basic realm="x"', []);
  t.is(await without.authorization([]), undefined);
});
