// BuildKit's frontend/dockerfile/dockerfile_onbuild_test.go, replayed offline (see harness.ts and README.md).
// The images BuildKit pushes to a registry between builds are built into the test's store (`before`), and its
// alpine images are an image of our own with an /etc/alpine-release. testOnBuildNamedContext is in
// namedcontext.test.ts.
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_onbuild_test.go';

const alpine = { tag: 'bk-alpine:latest', dockerfile: 'FROM busybox\nRUN echo 3.20.0 > /etc/alpine-release\n' };
const onbuildBase = {
  tag: 'bk-onbuild-deps:base',
  dockerfile: 'FROM busybox\nONBUILD COPY --from=bk-alpine /etc/alpine-release /out/alpine-release2\n',
};

export const cases: BkCase[] = [
  {
    from: `${F} testOnBuildCleared`,
    title: 'ONBUILD triggers run once, in the image built FROM the one that declares them, not in its children',
    before: [
      { tag: 'bk-onbuild:base', dockerfile: 'FROM busybox\nONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo\n' },
      { tag: 'bk-onbuild:child', dockerfile: 'FROM bk-onbuild:base\n' },
    ],
    dockerfile: 'FROM bk-onbuild:child AS base\nFROM scratch\nCOPY --from=base /out /\n',
    expect: { files: { foo: '11' } },
  },
  {
    from: `${F} testOnBuildWithChildStage`,
    title: 'ONBUILD triggers of the parent image do not run again in a stage FROM the current one',
    before: [
      {
        tag: 'bk-onbuild-stage:base',
        dockerfile: 'FROM busybox\nONBUILD RUN mkdir -p /out && echo -n yes >> /out/didrun\n',
      },
    ],
    dockerfile: `FROM bk-onbuild-stage:base AS base
RUN [ -f /out/didrun ] && touch /step1
RUN rm /out/didrun
RUN [ ! -f /out/didrun ] && touch /step2
FROM base AS child
RUN [ ! -f /out/didrun ] && touch /step3
FROM scratch
COPY --from=child /step* /
`,
    expect: { files: { step1: '', step2: '', step3: '' } },
  },
  {
    from: `${F} testOnBuildInheritedStageRun`,
    title: 'an ONBUILD RUN of a stage runs in the stage FROM it',
    dockerfile: `FROM busybox AS base
ONBUILD RUN mkdir -p /out && echo -n 11 >> /out/foo
FROM base AS mid
RUN cp /out/foo /out/bar
FROM scratch
COPY --from=mid /out/bar /
`,
    expect: { files: { bar: '11' } },
  },
  {
    from: `${F} testOnBuildInheritedStageWithFrom`,
    title: 'an ONBUILD COPY --from of a stage copies from the named stage in the stage FROM it',
    dockerfile: `FROM busybox AS src
RUN mkdir -p /in && echo -n 12 > /in/file
FROM busybox AS base
ONBUILD COPY --from=src /in/file /out/foo
FROM base AS mid
RUN cp /out/foo /out/bar
FROM scratch
COPY --from=mid /out/bar /
`,
    expect: { files: { bar: '12' } },
  },
  {
    from: `${F} testOnBuildNewDeps`,
    title: 'an ONBUILD COPY --from of an image the Dockerfile never names pulls that image in',
    before: [alpine, onbuildBase],
    dockerfile: `FROM bk-onbuild-deps:base AS base
RUN cat /out/alpine-release2 > /out/alpine-release3
FROM scratch
COPY --from=base /out /
`,
    expect: { files: { 'alpine-release3': '3.20.0\n' } },
  },
  {
    from: `${F} testOnBuildNewDeps`,
    title: 'an ONBUILD RUN --mount from a stage of the child Dockerfile, with nested ONBUILD images',
    before: [
      alpine,
      onbuildBase,
      {
        tag: 'bk-onbuild-deps:base2',
        dockerfile:
          'FROM bk-alpine\nONBUILD RUN --mount=type=bind,target=/in,from=inputstage mkdir /out && cat /in/foo > /out/bar && cat /in/out/alpine-release2 > /out/bar2\n',
      },
    ],
    dockerfile: `FROM bk-onbuild-deps:base AS inputstage
RUN cat /out/alpine-release2 > /out/alpine-release4
RUN echo -n foo > /foo
FROM bk-onbuild-deps:base2 AS base
RUN echo -n bar3 > /out/bar3
FROM scratch
COPY --from=base /out /
`,
    expect: { files: { bar: 'foo', bar2: '3.20.0\n', bar3: 'bar3' } },
  },
  {
    from: `${F} testOnBuildWithCacheMount`,
    title: 'an ONBUILD RUN with a cache mount fills the cache the child build mounts',
    before: [
      {
        tag: 'bk-onbuild-cache:base',
        dockerfile:
          'FROM busybox\nONBUILD RUN --mount=type=cache,target=/cache echo -n 42 >> /cache/foo && echo -n 11 >> /bar\n',
      },
    ],
    dockerfile:
      'FROM bk-onbuild-cache:base\nRUN --mount=type=cache,target=/cache [ "$(cat /cache/foo)" = "42" ] && [ "$(cat /bar)" = "11" ]\n',
    expect: {},
  },
];

declareCases(cases);
