// Build progress rendering: plain and tty.
import test from 'ava';
import { plainRenderer } from '../../cli/progress/build-plain.js';
import { ttyRenderer } from '../../cli/progress/build-tty.js';

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
