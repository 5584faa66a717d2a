// BuildKit's frontend/dockerfile/dockerfile_copy_test.go, replayed offline (see harness.ts and README.md).
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_copy_test.go';

const chownExisting = `FROM busybox AS source
RUN touch /file && chown 100:200 /file && mkdir -p /dir/subdir && touch /dir/subdir/nestedfile \\
 && chown 100:200 /dir && chown 101:201 /dir/subdir && chown 102:202 /dir/subdir/nestedfile
FROM busybox AS test_base
RUN mkdir -p /existingdir/existingsubdir && touch /existingdir/existingfile \\
 && chown 500:600 /existingdir && chown 501:601 /existingdir/existingsubdir && chown 501:601 /existingdir/existingfile
FROM test_base AS copy_from
COPY --from=source /file .
COPY --from=source /dir /dir
COPY --from=source /dir/. /existingdir
FROM test_base AS copy_from_chowned
COPY --from=source --chown=300:400 /file .
COPY --from=source --chown=300:400 /dir /dir
COPY --from=source --chown=300:400 /dir/. /existingdir
`;

const chmodNonOctal = `FROM busybox AS base
RUN mkdir -p /input/dir /input/dirs/d1 /input/dirs/d2 /input/dirs/d3 && touch /input/file && chmod 666 /input/file \\
 && for d in d1 d2 d3; do mkdir /input/dirs/$d/$d && chmod 124 /input/dirs/$d/$d; done
FROM scratch
COPY --from=base --chmod=go-w /input/file /f1
COPY --from=base --chmod=u=rw,g=r,o=r /input/file /f2
COPY --from=base --chmod=a+X /input/file /f3
COPY --from=base --chmod=go-w /input/dirs/d1 /
COPY --from=base --chmod=u+rw,g+r,o-x,o+w /input/dirs/d2 /
COPY --from=base --chmod=a+X /input/dirs/d3 /
`;

export const cases: BkCase[] = [
  {
    from: `${F} testDockerfileCopyFromArgs`,
    title: "COPY --from with a variable is refused with BuildKit's workaround hint",
    dockerfile: 'FROM scratch\nCOPY --from=$FOO . .\n',
    expect: {
      error:
        'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
    },
  },
  {
    from: `${F} testEmptyDestDir`,
    title: "COPY to an empty destination (an empty variable or '') copies into the working directory",
    dockerfile:
      'FROM busybox\nENV empty=""\nCOPY testfile $empty\nRUN [ "$(cat testfile)" == "contents0" ]\nCOPY testfile \'\'\nRUN [ "$(cat testfile)" == "contents0" ]\n',
    context: { testfile: 'contents0' },
    expect: { files: { testfile: 'contents0' } },
  },
  {
    from: `${F} testPreserveDestDirSlash`,
    title: 'COPY to a destination ending in / makes a directory and copies into it, twice over',
    dockerfile:
      'FROM busybox\nCOPY testfile /sample/\nRUN [ "$(cat /sample/testfile)" == "contents0" ]\nCOPY testfile /sample/\n',
    context: { testfile: 'contents0' },
    expect: { files: { 'sample/testfile': 'contents0', sample: { type: 'dir' } } },
  },
  {
    from: `${F} testCopyLinkDotDestDir`,
    title: 'COPY --link to . copies into the WORKDIR',
    dockerfile: 'FROM busybox\nWORKDIR /var/www\nCOPY --link testfile .\nRUN [ "$(cat testfile)" == "contents0" ]\n',
    context: { testfile: 'contents0' },
    expect: { files: { 'var/www/testfile': 'contents0' } },
  },
  {
    from: `${F} testCopyLinkEmptyDestDir`,
    title: 'COPY --link to an empty destination copies into the WORKDIR',
    dockerfile:
      'FROM busybox\nWORKDIR /var/www\nENV empty=""\nCOPY --link testfile $empty\nRUN [ "$(cat testfile)" == "contents0" ]\n',
    context: { testfile: 'contents0' },
    expect: { files: { 'var/www/testfile': 'contents0' } },
  },
  {
    from: `${F} testCopyChownExistingDir`,
    title: 'COPY --from keeps the source owners of new entries and leaves existing directories alone',
    dockerfile: chownExisting,
    target: 'copy_from',
    expect: {
      files: {
        file: { uid: 100, gid: 200 },
        dir: { uid: 0, gid: 0 },
        'dir/subdir': { uid: 101, gid: 201 },
        'dir/subdir/nestedfile': { uid: 102, gid: 202 },
        existingdir: { uid: 500, gid: 600 },
        'existingdir/existingsubdir': { uid: 501, gid: 601 },
        'existingdir/existingfile': { uid: 501, gid: 601 },
        'existingdir/subdir': { uid: 101, gid: 201 },
        'existingdir/subdir/nestedfile': { uid: 102, gid: 202 },
      },
    },
  },
  {
    from: `${F} testCopyChownExistingDir`,
    title: 'COPY --from --chown owns what it creates, and leaves existing directories alone',
    dockerfile: chownExisting,
    target: 'copy_from_chowned',
    expect: {
      files: {
        file: { uid: 300, gid: 400 },
        dir: { uid: 300, gid: 400 },
        'dir/subdir': { uid: 300, gid: 400 },
        'dir/subdir/nestedfile': { uid: 300, gid: 400 },
        existingdir: { uid: 500, gid: 600 },
        'existingdir/existingsubdir': { uid: 501, gid: 601 },
        'existingdir/existingfile': { uid: 501, gid: 601 },
        'existingdir/subdir': { uid: 300, gid: 400 },
        'existingdir/subdir/nestedfile': { uid: 300, gid: 400 },
      },
    },
  },
  {
    from: `${F} testCopyWildcardCache`,
    title: 'COPY of a wildcard into a directory copies every match',
    dockerfile: 'FROM busybox AS base\nCOPY foo* files/\nCOPY bar files/\n',
    context: { foo1: 'foo1-data', foo2: 'foo2-data', bar: 'bar-data' },
    expect: { files: { 'files/foo1': 'foo1-data', 'files/foo2': 'foo2-data', 'files/bar': 'bar-data' } },
  },
  {
    from: `${F} testEmptyWildcard`,
    title: 'a wildcard that matches nothing next to a source that exists is not an error',
    dockerfile: 'FROM scratch\nCOPY foo nomatch* /\n',
    context: { foo: 'contents0' },
    expect: { files: { foo: 'contents0' } },
  },
  {
    from: `${F} testCopyChownCreateDest`,
    title: 'COPY --chown by name (also from ENV and ARG) owns the destination directory it creates',
    dockerfile:
      'FROM busybox\nARG group\nENV owner user01\nRUN echo user1:x:1001:1001::/:/bin/sh >> /etc/passwd && echo user01:x:1002:1002::/:/bin/sh >> /etc/passwd && echo user1:x:1001: >> /etc/group\nCOPY --chown=user1:user1 . /dest\nCOPY --chown=${owner}:${group} . /dest01\nRUN [ "$(stat -c "%U %G" /dest)" == "user1 user1" ]\nRUN [ "$(stat -c "%U %G" /dest01)" == "user01 user1" ]\n',
    buildArgs: { group: 'user1' },
    expect: {},
  },
  {
    from: `${F} testCopyThroughSymlinkContext`,
    title: 'a source path through a symlinked directory of the context is followed',
    dockerfile: 'FROM scratch\nCOPY link/foo .\n',
    context: { link: { link: 'sub' }, 'sub/foo': 'contents' },
    expect: { files: { foo: 'contents' } },
  },
  {
    from: `${F} testCopyThroughSymlinkMultiStage`,
    title: 'COPY --from follows absolute and relative symlinks in the source path',
    dockerfile:
      'FROM busybox AS build\nRUN mkdir -p /out/sub && ln -s /out/sub /sub && ln -s out/sub /sub2 && echo -n "data" > /sub/foo\nFROM scratch\nCOPY --from=build /sub/foo .\nCOPY --from=build /sub2/foo bar\n',
    expect: { files: { foo: 'data', bar: 'data' } },
  },
  {
    from: `${F} testCopyFollowAllSymlinks`,
    title: 'a symlink inside a copied directory is kept, and naming it as the source copies its target',
    dockerfile: 'FROM scratch\nCOPY foo /\nCOPY foo/sub bar\n',
    context: { bar: 'bar-contents', 'foo/sub': { link: '../bar' } },
    expect: { files: { bar: 'bar-contents', sub: { type: 'symlink', link: '../bar' } } },
  },
  {
    from: `${F} testCopySymlinks`,
    title: 'a symlink named as the source is followed; symlinks matched by a wildcard are followed too',
    dockerfile: 'FROM scratch\nCOPY foo /\nCOPY sub/l* alllinks/\n',
    context: {
      bar: 'bar-contents',
      foo: { link: 'bar' },
      'sub/lfile': 'lfile-contents',
      'sub/l0': { link: 'subfile' },
      'sub/subfile': 'subfile-contents',
      'sub/l1': { link: 'second' },
      'sub/second': { link: 'baz' },
      'sub/baz': 'baz-contents',
    },
    expect: {
      files: {
        foo: 'bar-contents',
        'alllinks/l0': 'subfile-contents',
        'alllinks/lfile': 'lfile-contents',
        'alllinks/l1': 'baz-contents',
      },
    },
  },
  {
    from: `${F} testCopyChown`,
    title: 'COPY --chown by name, uid:name, and from ENV and ARG',
    dockerfile:
      'FROM busybox AS base\nENV owner 1000\nRUN mkdir -m 0777 /out\nCOPY --chown=user foo /\nCOPY --chown=1000:nogroup bar /baz\nARG group\nCOPY --chown=${owner}:${group} foo /foobis\nRUN stat -c "%U %G" /foo  > /out/fooowner\nRUN stat -c "%u %G" /baz/sub  > /out/subowner\nRUN stat -c "%u %G" /foobis  > /out/foobisowner\nFROM scratch\nCOPY --from=base /out /\n',
    context: { foo: 'foo-contents', 'bar/sub': '' },
    buildArgs: { group: 'nogroup' },
    expect: { files: { fooowner: 'user user\n', subowner: '1000 nogroup\n', foobisowner: '1000 nogroup\n' } },
  },
  {
    from: `${F} testCopyChmod`,
    title: 'COPY --chmod sets octal modes, from an ARG too, and gives the parents it creates that mode too',
    dockerfile:
      'FROM busybox AS base\nCOPY --chmod=0644 foo /\nCOPY --chmod=777 bar /baz\nCOPY --chmod=0 foo /foobis\nCOPY --chmod=777 foo /parent/foo\nCOPY --chmod=770 foo /parent/sub/foo\nARG mode\nCOPY --chmod=${mode} foo /footer\n',
    context: { foo: { content: 'foo-contents', mode: 0o600 }, bar: { content: 'bar-contents', mode: 0o700 } },
    buildArgs: { mode: '755' },
    expect: {
      files: {
        foo: { mode: '0644' },
        baz: { mode: '0777' },
        foobis: { mode: '0000' },
        parent: { mode: '0777' },
        'parent/sub': { mode: '0770' },
        footer: { mode: '0755' },
      },
    },
  },
  {
    from: `${F} testCopyInvalidChmod`,
    title: "COPY --chmod=64a is refused with BuildKit's message",
    dockerfile: 'FROM scratch\nCOPY --chmod=64a foo /\n',
    context: { foo: 'foo-contents' },
    expect: { error: "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777" },
  },
  {
    from: `${F} testCopyInvalidChmod`,
    title: "COPY --chmod=10000 is refused with BuildKit's message",
    dockerfile: 'FROM scratch\nCOPY --chmod=10000 foo /\n',
    context: { foo: 'foo-contents' },
    expect: { error: "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777" },
  },
  {
    from: `${F} testChmodNonOctal`,
    title: "COPY --chmod takes chmod's symbolic modes, X included, for files and directories",
    dockerfile: chmodNonOctal,
    expect: {
      files: {
        f1: { mode: '0644' },
        f2: { mode: '0644' },
        f3: { mode: '0666' },
        d1: { mode: '0104' },
        d2: { mode: '0766' },
        d3: { mode: '0135' },
      },
    },
  },
  {
    from: `${F} testCopyOverrideFiles`,
    title: 'copying the same files and directories twice overwrites them',
    dockerfile:
      'FROM scratch AS base\nCOPY sub sub\nCOPY sub sub\nCOPY files/foo.go dest/foo.go\nCOPY files/foo.go dest/foo.go\nCOPY files dest\n',
    context: { 'sub/dir1/dir2/foo': 'foo-contents', 'files/foo.go': 'foo.go-contents' },
    expect: { files: { 'sub/dir1/dir2/foo': 'foo-contents', 'dest/foo.go': 'foo.go-contents' } },
  },
  {
    from: `${F} testCopyVarSubstitution`,
    title: 'a COPY source expands ENV variables',
    dockerfile: 'FROM scratch AS base\nENV FOO bar\nCOPY $FOO baz\n',
    context: { bar: 'bar-contents' },
    expect: { files: { baz: 'bar-contents' } },
  },
  {
    from: `${F} testCopyWildcards`,
    title: 'COPY wildcards: into a directory, to a file, in the middle of a path, and directory contents',
    dockerfile:
      'FROM scratch AS base\nCOPY *.go /gofiles/\nCOPY f*.go foo2.go\nCOPY sub/* /subdest/\nCOPY sub/*/dir2/foo /subdest2/\nCOPY sub/*/dir2/foo /subdest3/bar\nCOPY . all/\nCOPY sub/dir1/ subdest4\nCOPY sub/dir1/. subdest5\nCOPY sub/dir1 subdest6\n',
    context: { 'foo.go': 'foo-contents', 'bar.go': 'bar-contents', 'sub/dir1/dir2/foo': 'foo-contents' },
    expect: {
      files: {
        'gofiles/foo.go': 'foo-contents',
        'gofiles/bar.go': 'bar-contents',
        'foo2.go': 'foo-contents',
        'subdest/dir2/foo': 'foo-contents',
        'subdest2/foo': 'foo-contents',
        'subdest3/bar': 'foo-contents',
        'all/foo.go': 'foo-contents',
        'subdest4/dir2/foo': 'foo-contents',
        'subdest5/dir2/foo': 'foo-contents',
        'subdest6/dir2/foo': 'foo-contents',
      },
    },
  },
  {
    from: `${F} testCopyRelative`,
    title: 'relative COPY and ADD destinations resolve against WORKDIR, also after WORKDIR ..',
    dockerfile: `FROM busybox
WORKDIR /test1
WORKDIR test2
RUN sh -c "[ "$PWD" = '/test1/test2' ]"
COPY foo ./
RUN sh -c "[ $(cat /test1/test2/foo) = 'hello' ]"
ADD foo ./bar/baz
RUN sh -c "[ $(cat /test1/test2/bar/baz) = 'hello' ]"
COPY foo ./bar/baz2
RUN sh -c "[ $(cat /test1/test2/bar/baz2) = 'hello' ]"
WORKDIR ..
COPY foo ./
RUN sh -c "[ $(cat /test1/foo) = 'hello' ]"
COPY foo /test3/
RUN sh -c "[ $(cat /test3/foo) = 'hello' ]"
WORKDIR /test4
COPY . .
RUN sh -c "[ $(cat /test4/foo) = 'hello' ]"
WORKDIR /test5/test6
COPY foo ../
RUN sh -c "[ $(cat /test5/foo) = 'hello' ]"
`,
    context: { foo: 'hello' },
    expect: { files: { 'test1/test2/bar/baz': 'hello', 'test5/foo': 'hello', 'test4/foo': 'hello' } },
  },
  {
    from: `${F} testCopyUnicodePath`,
    title: 'sources with non-ASCII, percent and plus characters in their names are copied as named',
    dockerfile: 'FROM scratch\nCOPY test-äöü.txt /\nCOPY test-%C3%A4%C3%B6%C3%BC.txt /\nCOPY test+aou.txt /\n',
    context: { 'test-äöü.txt': 'foo', 'test-%C3%A4%C3%B6%C3%BC.txt': 'bar', 'test+aou.txt': 'baz' },
    expect: { files: { 'test-äöü.txt': 'foo', 'test-%C3%A4%C3%B6%C3%BC.txt': 'bar', 'test+aou.txt': 'baz' } },
  },
  {
    from: `${F} testCopySocket`,
    title: 'a unix socket in the context is copied as BuildKit does (a regular file)',
    dockerfile: 'FROM scratch\nCOPY . /\n',
    context: { 'socket.sock': { socket: true } as never },
    expect: { files: { 'socket.sock': { type: 'file' } } },
  },
];

declareCases(cases);
