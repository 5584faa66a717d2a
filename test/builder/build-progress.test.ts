// Progress rendering (plain and tty), RUN --mount parsing, and the history strings of metadata instructions.
import test from 'ava';
import { plainRenderer, ttyRenderer } from '../../builder/progress.js';
import { parseMount } from '../../builder/steps/run-mounts.js';
import { goDuration, goQuoteList, healthString } from '../../builder/history.js';

function clock(): { now: () => number; tick: (ms: number) => void } {
  let t = 1_000_000;
  return { now: () => t, tick: (ms) => (t += ms) };
}

test('plain progress prints numbered steps, timed output lines, CACHED and DONE', (t) => {
  let out = '';
  const c = clock();
  const r = plainRenderer((s) => (out += s), c.now);
  r.onEvent({ type: 'step', id: 3, name: '[2/3] RUN make' });
  c.tick(120);
  r.onEvent({ type: 'log', id: 3, stream: 'stdout', data: 'compiling\nlin' });
  r.onEvent({ type: 'log', id: 3, stream: 'stderr', data: 'king\n' });
  c.tick(1000);
  r.onEvent({ type: 'done', id: 3 });
  r.onEvent({ type: 'step', id: 4, name: '[3/3] COPY a /b' });
  r.onEvent({ type: 'cached', id: 4 });
  r.onEvent({ type: 'done', id: 4 });
  r.onEvent({ type: 'step', id: 5, name: '[1/1] RUN false' });
  r.onEvent({ type: 'error', id: 5, message: 'exit code: 1' });
  r.finish();
  t.is(
    out,
    '\n#3 [2/3] RUN make\n#3   0.1 compiling\n#3   0.1 linking\n#3 DONE 1.1s\n\n#4 [3/3] COPY a /b\n#4 CACHED\n\n#5 [1/1] RUN false\n#5 ERROR: exit code: 1\n',
  );
});

test('tty progress redraws a summary in place and prints a failed step in full at the end', (t) => {
  let out = '';
  const c = clock();
  const r = ttyRenderer({ write: (s: string) => (out += s), columns: 80 }, c.now);
  r.onEvent({ type: 'step', id: 1, name: '[1/2] RUN ok' });
  r.onEvent({ type: 'done', id: 1 });
  r.onEvent({ type: 'step', id: 2, name: '[2/2] RUN bad' });
  for (let i = 0; i < 20; i++) r.onEvent({ type: 'log', id: 2, stream: 'stdout', data: `line ${i}\n` });
  r.onEvent({ type: 'error', id: 2, message: 'exit code: 2' });
  r.finish();
  t.regex(out, /\[\+\] Building .* FINISHED/);
  t.regex(out, / => \[2\/2\] RUN bad +ERROR/);
  // every line of the failed step, not only the tail the live view showed
  for (let i = 0; i < 20; i++) t.true(out.includes(`line ${i}\n`), `line ${i}`);
  t.true(out.includes('\x1b[2K'), 'lines are cleared as they are redrawn');
});

test('RUN --mount values are read with BuildKit defaults', (t) => {
  const x = (s: string): string => s.replace('$HOME', '/root');
  t.deepEqual(parseMount('type=cache,target=$HOME/.cache', x, '/w'), {
    type: 'cache', target: '/root/.cache', id: '/root/.cache', sharing: 'shared', source: '/', readonly: false, mode: 0o755, uid: 0, gid: 0,
  });
  t.deepEqual(parseMount('target=rel,source=src', x, '/w'), { type: 'bind', target: '/w/rel', source: 'src', readonly: true });
  t.deepEqual(parseMount('type=bind,dst=/m,rw', x, '/'), { type: 'bind', target: '/m', source: '/', readonly: false });
  t.deepEqual(parseMount('type=secret,id=tok', x, '/'), { type: 'secret', id: 'tok', target: '/run/secrets/tok', required: false, mode: 0o400, uid: 0, gid: 0 });
  t.deepEqual(parseMount('type=secret,id=tok,env=TOKEN', x, '/'), { type: 'secret', id: 'tok', env: 'TOKEN', required: false, mode: 0o400, uid: 0, gid: 0 });
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
  t.is(healthString({ Test: ['CMD', 'true'], Interval: 1e9, Retries: 2 }), '{Test:[CMD true] Interval:1s Timeout:0s StartPeriod:0s StartInterval:0s Retries:2}');
});
