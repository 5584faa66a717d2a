// BuildKit's frontend/dockerfile/dockerfile_dockerignore_test.go, replayed offline (see harness.ts and README.md).
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_dockerignore_test.go';

const overrideCtx = {
  'Dockerfile.dockerignore': { content: '\nbar\n', mode: 0o600 },
  Dockerfile2: { content: 'FROM busybox\nCOPY . .\nRUN [ ! -f foo ] && [ -f bar ]\n', mode: 0o600 },
  'Dockerfile2.dockerignore': { content: '\nfoo\n', mode: 0o600 },
  foo: { content: 'contents0', mode: 0o600 },
  bar: { content: 'contents0', mode: 0o600 },
};

export const cases: BkCase[] = [
  {
    from: `${F} testDockerignore`,
    title: '.dockerignore leaves out its patterns, keeps a ! exception, and may leave out itself and the Dockerfile',
    dockerfile: 'FROM scratch\nCOPY . .\n',
    context: {
      foo: { content: 'foo-contents', mode: 0o600 },
      bar: { content: 'bar-contents', mode: 0o600 },
      baz: { content: 'baz-contents', mode: 0o600 },
      bay: { content: 'bay-contents', mode: 0o600 },
      '.dockerignore': { content: '\nba*\nDockerfile\n!bay\n.dockerignore\n', mode: 0o600 },
    },
    expect: {
      files: {
        foo: 'foo-contents',
        '.dockerignore': 'absent',
        Dockerfile: 'absent',
        bar: 'absent',
        baz: 'absent',
        bay: 'bay-contents',
      },
    },
  },
  {
    from: `${F} testDockerignoreInvalid`,
    title: 'a .dockerignore with a lone ! fails the build (and does not hang)',
    dockerfile: 'FROM scratch\nCOPY . .\n',
    context: { '.dockerignore': { content: '!\n', mode: 0o600 } },
    expect: { error: 'illegal exclusion pattern: "!"' },
  },
  {
    from: `${F} testDockerignoreOverride`,
    title: 'Dockerfile.dockerignore beside the Dockerfile replaces .dockerignore',
    dockerfile: 'FROM busybox\nCOPY . .\nRUN [ -f foo ] && [ ! -f bar ]\n',
    context: overrideCtx,
    expect: { files: { foo: 'contents0', bar: 'absent' } },
  },
  {
    from: `${F} testDockerignoreOverride`,
    title: 'with -f Dockerfile2, Dockerfile2.dockerignore is the one read',
    dockerfile: 'FROM busybox\nCOPY . .\nRUN [ -f foo ] && [ ! -f bar ]\n',
    dockerfilePath: 'Dockerfile2',
    context: overrideCtx,
    expect: { files: { foo: 'absent', bar: 'contents0' } },
  },
];

declareCases(cases);
