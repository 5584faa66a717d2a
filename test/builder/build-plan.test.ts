// planBuild (pure): global ARGs and --build-arg, FROM expansion, stage references, --target and the stages it
// needs, ONBUILD triggers of a parent stage, and the errors BuildKit gives.
import test from 'ava';
import { parseDockerfile } from '../../builder/dockerfile/parse.js';
import { planBuild, type PlanOptions } from '../../builder/plan.js';

function plan(text: string, opts: Partial<PlanOptions> = {}) {
  return planBuild({ instructions: parseDockerfile(text).instructions, ...opts });
}

test('global ARGs expand in FROM, a --build-arg wins over a default, and the platform ARGs are set', (t) => {
  const p = plan('ARG REG=docker.io\nARG IMG=${REG}/library/alpine\nFROM $IMG:$TARGETARCH\n', {
    buildArgs: { REG: 'example.com' },
  });
  t.deepEqual(p.stages[0]!.base, { kind: 'image', ref: 'example.com/library/alpine:amd64' });
  t.is(p.globalArgs.get('TARGETPLATFORM'), 'linux/amd64');
  t.is(p.globalArgs.get('BUILDOS'), 'linux');
  t.is(p.globalArgs.get('TARGETVARIANT'), '');
});

test('FROM of an earlier stage name, scratch, or an image', (t) => {
  const p = plan('FROM busybox AS base\nFROM base AS child\nFROM scratch\n');
  t.deepEqual(
    p.stages.map((s) => s.base),
    [{ kind: 'image', ref: 'busybox' }, { kind: 'stage', index: 0 }, { kind: 'scratch' }],
  );
  t.deepEqual(
    p.stages.map((s) => s.displayName),
    ['base', 'child', 'stage-2'],
  );
});

test('a single-stage Dockerfile shows no stage name in progress', (t) => {
  t.is(plan('FROM busybox\nRUN true\n').stages[0]!.displayName, '');
});

test('--target builds only the stages it reaches through FROM, COPY --from and RUN --mount from=', (t) => {
  const p = plan(
    [
      'FROM busybox AS a',
      'FROM busybox AS unused',
      'FROM busybox AS b',
      'FROM busybox AS mnt',
      'FROM a AS c',
      'COPY --from=b /x /x',
      'RUN --mount=type=bind,from=mnt,target=/m true',
      'FROM busybox AS last',
    ].join('\n'),
    { target: 'C' },
  );
  t.is(p.target, 4);
  t.deepEqual(p.needed, [0, 2, 3, 4]);
  t.deepEqual(p.stages[4]!.deps, [0, 2, 3]);
});

test('without --target the last stage is built', (t) => {
  const p = plan('FROM busybox AS a\nFROM busybox AS b\n');
  t.is(p.target, 1);
  t.deepEqual(p.needed, [1]);
});

test('COPY --from with a variable is refused as BuildKit does', (t) => {
  const err = t.throws(() => plan('FROM busybox AS a\nFROM busybox\nARG S=a\nCOPY --from=$S /x /x\n'));
  t.regex(err!.message, /^Dockerfile:4: variable expansion is not supported for --from/);
});

test('COPY --from of a stage defined later is refused', (t) => {
  const err = t.throws(() => plan('FROM busybox\nCOPY --from=later /x /x\nFROM busybox AS later\n'));
  t.regex(err!.message, /^Dockerfile:2: cannot copy from stage "later", it needs to be defined before current stage/);
});

test('COPY --from of a name that is no stage is an image dependency', (t) => {
  const p = plan('FROM busybox\nCOPY --from=alpine:3 /etc/os-release /\n');
  t.deepEqual(p.stages[0]!.images, ['alpine:3']);
  t.deepEqual(p.stages[0]!.deps, []);
});

test('an unknown --target names the stages there are', (t) => {
  const err = t.throws(() => plan('FROM busybox AS one\nFROM busybox AS two\n', { target: 'three' }));
  t.regex(err!.message, /target stage "three" could not be found/);
});

test('a blank base name is an error on its line', (t) => {
  const err = t.throws(() => plan('ARG X\nFROM $X\n'));
  t.regex(err!.message, /^Dockerfile:2: base name \(\$X\) should not be blank/);
});

test('ONBUILD triggers of a parent stage come first in the child stage', (t) => {
  const p = plan('FROM busybox AS p\nONBUILD RUN echo hi\nRUN true\nFROM p\nRUN echo child\n');
  const child = p.stages[1]!;
  t.deepEqual(
    child.steps.map((s) => [s.ins.kind, s.onbuild]),
    [
      ['run', true],
      ['run', false],
    ],
  );
  t.is(child.total, 2);
});

test('progress counts FROM of an image and RUN, COPY, ADD and WORKDIR steps', (t) => {
  const p = plan('FROM busybox\nENV A=1\nWORKDIR /x\nRUN true\nCOPY a b\nADD c d\nLABEL x=y\n');
  t.is(p.stages[0]!.total, 5);
});

test('build args that no ARG declares are reported, proxy args excepted', (t) => {
  const p = plan('ARG USED\nFROM busybox\nARG ALSO\n', {
    buildArgs: { USED: '1', ALSO: '2', EXTRA: '3', HTTP_PROXY: 'http://p' },
  });
  t.deepEqual(p.unusedBuildArgs, ['EXTRA']);
});

test('SOURCE_DATE_EPOCH comes from a build arg and must be a number', (t) => {
  t.is(plan('FROM busybox\n', { buildArgs: { SOURCE_DATE_EPOCH: '1700000000' } }).epoch, 1700000000);
  t.throws(() => plan('FROM busybox\n', { buildArgs: { SOURCE_DATE_EPOCH: 'yesterday' } }), {
    message: /invalid SOURCE_DATE_EPOCH/,
  });
});
