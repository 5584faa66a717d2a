// BuildKit's frontend/dockerfile/dockerfile_mount_test.go, replayed offline (see harness.ts and README.md).
// A case that BuildKit runs twice (testMountRWCache, testMountDuplicate) builds its first run as `before`.
// testMountInvalid's wordings are in errors.test.ts; testCacheMountParallel runs once here (BuildKit repeats it
// 20 times against a runc bug); its alpine base is busybox.
import { declareCases, readImageFile, type BkCase } from './harness.js';

const F = 'dockerfile_mount_test.go';

const rwCache = `from busybox AS build
copy cachebust /
run mkdir out && echo foo > out/foo
from busybox as second
RUN --mount=from=build,src=out,target=/out,rw touch /out/bar && cat /dev/urandom | head -c 100 | sha256sum > /unique
from scratch
COPY --from=second /unique /unique
`;

const duplicate = `FROM busybox AS base
RUN --mount=source=.,target=/tmp/test \\
  --mount=source=b.txt,target=/tmp/b.txt \\
  cat /tmp/test/a.txt /tmp/b.txt > /combined.txt
FROM scratch
COPY --from=base /combined.txt /
`;

export const cases: BkCase[] = [
  {
    from: `${F} testMountContext`,
    title: 'RUN --mount with only a target binds the build context',
    dockerfile: 'FROM busybox\nRUN --mount=target=/context [ "$(cat /context/testfile)" == "contents0" ]\n',
    context: { testfile: { content: 'contents0', mode: 0o600 } },
    expect: {},
  },
  {
    from: `${F} testMountTmpfs`,
    title: 'a tmpfs mount leaves nothing in the image',
    dockerfile: 'FROM busybox\nRUN --mount=target=/mytmp,type=tmpfs touch /mytmp/foo\nRUN [ ! -f /mytmp/foo ]\n',
    expect: {},
  },
  {
    from: `${F} testMountRWCache`,
    title: 'a rw mount from a stage whose content did not change keeps the RUN cached',
    before: [{ tag: 'bk-mount-rwcache:first', dockerfile: rwCache, context: { cachebust: '0' } }],
    dockerfile: rwCache,
    context: { cachebust: '1' },
    expect: {
      check: async (t, { store, root }) => {
        const { readFileSync } = await import('node:fs');
        const first = await readImageFile(store, 'bk-mount-rwcache:first', 'unique');
        t.is(readFileSync(`${root!}/unique`, 'utf8'), first);
      },
      files: { unique: { type: 'file' } },
    },
  },
  {
    from: `${F} testCacheMountUser`,
    title: 'a cache mount gets the uid, gid and mode asked for',
    dockerfile:
      'FROM busybox\nRUN --mount=type=cache,target=/mycache,uid=1001,gid=1002,mode=0751 [ "$(stat -c "%u %g %f" /mycache)" == "1001 1002 41e9" ]\n',
    expect: {},
  },
  {
    from: `${F} testCacheMountDefaultID`,
    title: 'a cache mount without id is keyed by its target',
    dockerfile: `FROM busybox
RUN --mount=type=cache,target=/mycache touch /mycache/foo
RUN --mount=type=cache,target=/mycache2 [ ! -f /mycache2/foo ]
RUN --mount=type=cache,target=/mycache [ -f /mycache/foo ]
`,
    expect: {},
  },
  {
    from: `${F} testMountEnvVar`,
    title: 'a mount target expands ENV',
    dockerfile: `FROM busybox
ENV SOME_PATH=/mycache
RUN --mount=type=cache,target=/mycache touch /mycache/foo
RUN --mount=type=cache,target=$SOME_PATH [ -f $SOME_PATH/foo ]
`,
    expect: {},
  },
  {
    from: `${F} testMountArg`,
    title: 'a mount type expands ARG',
    dockerfile: `FROM busybox
ARG MNT_TYPE=cache
RUN --mount=type=$MNT_TYPE,target=/mycache2 touch /mycache2/foo
RUN --mount=type=cache,target=/mycache2 [ -f /mycache2/foo ]
`,
    expect: {},
  },
  {
    from: `${F} testMountEnvAcrossStages`,
    title: 'mount type and id expand ENV inherited from a parent stage',
    dockerfile: `FROM busybox as stage1
ENV MNT_ID=mycache
ENV MNT_TYPE2=cache
RUN --mount=type=cache,id=mycache,target=/abcabc touch /abcabc/foo
RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/cbacba [ -f /cbacba/foo ]
FROM stage1
RUN --mount=type=$MNT_TYPE2,id=$MNT_ID,target=/whatever [ -f /whatever/foo ]
`,
    expect: {},
  },
  {
    from: `${F} testMountMetaArg`,
    title: 'a mount target expands a global ARG redeclared in the stage',
    dockerfile: `ARG META_PATH=/tmp/meta
FROM busybox
ARG META_PATH
RUN --mount=type=cache,id=mycache,target=/tmp/meta touch /tmp/meta/foo
RUN --mount=type=cache,id=mycache,target=$META_PATH [ -f /tmp/meta/foo ]
`,
    expect: {},
  },
  {
    from: `${F} testMountFromError`,
    title: "--mount=from with a variable is refused with BuildKit's message",
    dockerfile: `FROM busybox as test
RUN touch /tmp/test
FROM busybox
ENV ttt=test
RUN --mount=from=$ttt,type=cache,target=/tmp ls
`,
    expect: { error: "'from' doesn't support variable expansion, define alias stage instead" },
  },
  {
    from: `${F} testMountTmpfsSize`,
    title: 'a tmpfs mount has the size asked for',
    dockerfile: `FROM busybox AS base
RUN --mount=type=tmpfs,target=/dev/shm,size=128m mount | grep /dev/shm > /tmpfssize
FROM scratch
COPY --from=base /tmpfssize /
`,
    expect: { files: { tmpfssize: { content: /size=131072k/ } } },
  },
  {
    from: `${F} testMountDuplicate`,
    title: 'a context mount and a file mount inside it both follow a changed context',
    before: [{ tag: 'bk-mount-dup:first', dockerfile: duplicate, context: { 'a.txt': 'foo\n', 'b.txt': 'bar\n' } }],
    dockerfile: duplicate,
    context: { 'a.txt': 'updated\n', 'b.txt': 'bar\n' },
    expect: { files: { 'combined.txt': 'updated\nbar\n' } },
  },
  {
    from: `${F} testCacheMountParallel`,
    title: 'two stages with nested cache mounts run side by side',
    dockerfile: `FROM busybox AS b1
RUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 1
FROM busybox AS b2
RUN --mount=type=cache,target=/foo/bar --mount=type=cache,target=/foo/bar/baz echo 2
FROM scratch
COPY --from=b1 /etc/passwd p1
COPY --from=b2 /etc/passwd p2
`,
    expect: { files: { p1: { type: 'file' }, p2: { type: 'file' } } },
  },
  {
    from: `${F} testCacheMountSourceEscape`,
    title: 'a cache mount whose source= resolves through a symlink out of the cache fails the build',
    dockerfile: `FROM busybox AS init
RUN --mount=type=cache,id=sourceescape,target=/cache mkdir -p /cache/sel && echo benign > /cache/sel/benign.txt
FROM init AS link
RUN --mount=type=cache,id=sourceescape,target=/cache rm -rf /cache/sel && ln -s /etc /cache/sel
FROM link AS victim
RUN --mount=type=cache,id=sourceescape,source=sel,target=/victim cat /victim/hostname
FROM scratch
COPY --from=victim /etc/hostname /hostname
`,
    expect: { error: /./ },
  },
];

declareCases(cases);
