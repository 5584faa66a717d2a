// RUN --mount parsing, and the history strings of metadata instructions.
import test from 'ava';
import { parseMount } from '../../builder/steps/run-mounts.js';
import { goDuration, goQuoteList, healthString } from '../../builder/history.js';

test('RUN --mount values are read with BuildKit defaults', (t) => {
  const x = (s: string): string => s.replace('$HOME', '/root');
  t.deepEqual(parseMount('type=cache,target=$HOME/.cache', x, '/w'), {
    type: 'cache',
    target: '/root/.cache',
    id: '/root/.cache',
    sharing: 'shared',
    source: '/',
    readonly: false,
    mode: 0o755,
    uid: 0,
    gid: 0,
  });
  t.deepEqual(parseMount('target=rel,source=src', x, '/w'), {
    type: 'bind',
    target: '/w/rel',
    source: 'src',
    readonly: true,
  });
  t.deepEqual(parseMount('type=bind,dst=/m,rw', x, '/'), { type: 'bind', target: '/m', source: '/', readonly: false });
  t.deepEqual(parseMount('type=secret,id=tok', x, '/'), {
    type: 'secret',
    id: 'tok',
    target: '/run/secrets/tok',
    required: false,
    mode: 0o400,
    uid: 0,
    gid: 0,
  });
  t.deepEqual(parseMount('type=secret,id=tok,env=TOKEN', x, '/'), {
    type: 'secret',
    id: 'tok',
    env: 'TOKEN',
    required: false,
    mode: 0o400,
    uid: 0,
    gid: 0,
  });
  t.deepEqual(parseMount('type=tmpfs,target=/t,size=64m', x, '/'), { type: 'tmpfs', target: '/t', size: 64 << 20 });
  t.throws(() => parseMount('type=bogus,target=/x', x, '/'), { message: /unsupported mount type "bogus"/ });
  t.throws(() => parseMount('type=cache', x, '/'), { message: /requires a target/ });
  t.throws(() => parseMount('type=cache,target=/c,sharing=weird', x, '/'), { message: /sharing/ });
  t.throws(() => parseMount('type=bind,target=/c,color=red', x, '/'), { message: /unexpected key 'color'/ });
});

test('history strings reproduce Go formatting: %q lists, durations, HEALTHCHECK %+v', (t) => {
  t.is(goQuoteList(['/bin/sh', '-c', 'echo "hi"']), '["/bin/sh" "-c" "echo \\"hi\\""]');
  t.is(goDuration(0), '0s');
  t.is(goDuration(5e9), '5s');
  t.is(goDuration(90e9), '1m30s');
  t.is(goDuration(3_600e9 + 1e9), '1h0m1s');
  t.is(goDuration(1.5e9), '1.5s');
  t.is(goDuration(2e6), '2ms');
  t.is(
    healthString({ Test: ['CMD', 'true'], Interval: 1e9, Retries: 2 }),
    '{Test:[CMD true] Interval:1s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}',
  );
});
