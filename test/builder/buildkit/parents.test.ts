// BuildKit's frontend/dockerfile/dockerfile_parents_test.go, replayed offline (see harness.ts and README.md).
// BuildKit's tests use alpine; busybox has every tool they call.
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_parents_test.go';

const relativeBase = `FROM busybox AS base
WORKDIR /test
RUN <<eot
	set -ex
	mkdir -p a/b/c/d/e
	mkdir -p a/b2/c/d/e
	mkdir -p a/b/c2/d/e
	mkdir -p a/b/c2/d/e2
	touch a/b/c/d/foo
	touch a/b/c/d/e/bay
	touch a/b2/c/d/e/bar
	touch a/b/c2/d/e/baz
	touch a/b/c2/d/e2/baz
eot
`;

/** one target of testCopyRelativeParents: a COPY --from=base --parents and the shell checks BuildKit runs */
const relative = (target: string, title: string, copy: string, checks: string[]): BkCase => ({
  from: `${F} testCopyRelativeParents`,
  title: `COPY --parents ${title} (${target})`,
  dockerfile: `${relativeBase}\nFROM busybox AS ${target}\nCOPY --from=base --parents ${copy} /out/\nRUN <<eot\n\tset -ex\n${checks.map((c) => `\t${c}\n`).join('')}eot\n`,
  target,
  expect: { history: [{ createdBy: /COPY/ }, { createdBy: /RUN/ }] },
});

const missingBase = `FROM busybox AS base
WORKDIR /test
RUN <<eot
	set -ex
	mkdir -p a/b/c/d/e
	touch a/b/c/d/foo
	touch a/b/c/d/e/bay
eot
`;

const missing = (target: string, title: string, copy: string, checks: string[], error?: RegExp): BkCase => ({
  from: `${F} testCopyParentsMissingDirectory`,
  title: `COPY --parents ${title} (${target})`,
  dockerfile: `${missingBase}\nFROM busybox AS ${target}\nCOPY --from=base --parents ${copy} /out/\n${
    checks.length ? `RUN <<eot\n\tset -ex\n${checks.map((c) => `\t${c}\n`).join('')}eot\n` : ''
  }`,
  target,
  expect: error ? { error } : {},
});

export const cases: BkCase[] = [
  {
    from: `${F} testCopyParents`,
    title: 'COPY --parents keeps the source path under the destination, with a wildcard too and relative to WORKDIR',
    dockerfile: 'FROM scratch\nCOPY --parents foo1/foo2/bar /\n\nWORKDIR /test\nCOPY --parents foo1/foo2/ba* .\n',
    context: {
      foo1: { dir: true, mode: 0o700 },
      'foo1/foo2': { dir: true, mode: 0o700 },
      'foo1/foo2/bar': { content: 'testing', mode: 0o600 },
      'foo1/foo2/baz': { content: 'testing2', mode: 0o600 },
    },
    expect: {
      files: { 'foo1/foo2/bar': 'testing', 'test/foo1/foo2/bar': 'testing', 'test/foo1/foo2/baz': 'testing2' },
    },
  },
  relative('middle', 'with a /./ pivot keeps only what follows it', '/test/a/b/./c/d', [
    '[ -d /out/c/d/e ]',
    '[ -f /out/c/d/foo ]',
    '[ ! -d /out/a ]',
    '[ ! -d /out/e ]',
  ]),
  relative('end', 'with a trailing /. keeps the whole path', '/test/a/b/c/d/.', [
    '[ -d /out/test/a/b/c/d/e ]',
    '[ -f /out/test/a/b/c/d/foo ]',
  ]),
  relative('start', 'of a ./ relative source keeps the whole path', './test/a/b/c/d', [
    '[ -d /out/test/a/b/c/d/e ]',
    '[ -f /out/test/a/b/c/d/foo ]',
  ]),
  relative('double', 'with two pivots keeps what follows the last', '/test/a/./b/./c', [
    '[ -d /out/b/c/d/e ]',
    '[ -f /out/b/c/d/foo ]',
  ]),
  relative('wildcard', 'with a wildcard after the pivot keeps each match', '/test/a/./*/c', [
    '[ -d /out/b/c/d/e ]',
    '[ -f /out/b2/c/d/e/bar ]',
  ]),
  relative('doublewildcard', 'with ** merges every match under the pivot', '/test/a/b*/./c/**/e', [
    '[ -d /out/c/d/e ]',
    '[ -f /out/c/d/e/bay ]',
    '[ -f /out/c/d/e/bar ]',
  ]),
  relative(
    'doubleinputs',
    'with several wildcard inputs copies exactly their matches',
    '/test/a/b/c*/./d/**/baz /test/a/b*/./c/**/bar',
    ['[ -f /out/d/e/baz ]', '[ ! -f /out/d/e/bay ]', '[ -f /out/d/e2/baz ]', '[ -f /out/c/d/e/bar ]'],
  ),
  missing('normal', 'without a pivot keeps the whole path', '/test/a/b/c/d', [
    '[ -d /out/test/a/b/c/d/e ]',
    '[ -f /out/test/a/b/c/d/e/bay ]',
    '[ ! -d /out/e ]',
    '[ ! -d /out/a ]',
  ]),
  missing('withpivot', 'with a pivot keeps what follows it', '/test/a/b/./c/d', [
    '[ -d /out/c/d/e ]',
    '[ -f /out/c/d/foo ]',
    '[ ! -d /out/a ]',
    '[ ! -d /out/e ]',
  ]),
  missing(
    'nonexistentfile',
    'of a missing file fails: not found',
    '/test/nonexistent-file',
    [],
    /"\/test\/nonexistent-file":? not found/,
  ),
  missing('wildcard-nonexistent', 'of a wildcard matching nothing creates only the destination', '/test/a/b2*/c', [
    '[ -d /out ]',
    '[ ! -d /out/a ]',
  ]),
  missing(
    'wildcard-afterpivot',
    'of a wildcard after the pivot matching nothing creates only the destination',
    '/test/a/b/./c2*',
    ['[ -d /out ]', '[ ! -d /out/a ]', '[ ! -d /out/c* ]'],
  ),
];

declareCases(cases);
