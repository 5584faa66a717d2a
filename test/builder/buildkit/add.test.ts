// BuildKit's frontend/dockerfile/dockerfile_add_test.go, replayed offline: URLs are served from 127.0.0.1 by this
// file (see harness.ts and README.md).
import test from 'ava';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { tarSync } from '../../../fixtures/hostile-layers.js';
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_add_test.go';

const served: Record<string, string> = { '/foo': 'content1', '/bar': 'bar-contents' };
const server: Server = createServer((req, res) => {
  const body = served[req.url ?? ''];
  if (body === undefined) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(req.method === 'HEAD' ? undefined : body);
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
test.after.always(() => new Promise<void>((r) => server.close(() => r())));
const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const url = (): string => `${base}/foo`;
const sha = `sha256:${createHash('sha256').update('content1').digest('hex')}`;
const tarFiles = { foo: 'content0' };

// testDockerfileAddArchiveThroughAbsoluteSymlink: an image whose var/run is a symlink to /run, and a tar whose
// entries go through var/run (parents listed explicitly, a file and a hard link to it).
const head = 'ref: refs/heads/main\n';
const rootfsTar = tarSync([
  { name: 'run/', type: 'directory' },
  { name: 'var/', type: 'directory' },
  { name: 'var/run', type: 'symlink', linkname: '/run' },
]);
const git = 'var/run/act/actions/broad/.git';
const payloadTar = tarSync([
  { name: 'var/run/act/', type: 'directory' },
  { name: 'var/run/act/actions/', type: 'directory' },
  { name: 'var/run/act/actions/broad/', type: 'directory' },
  { name: `${git}/`, type: 'directory' },
  { name: `${git}/HEAD`, data: head },
  { name: `${git}/HEAD.link`, type: 'link', linkname: `${git}/HEAD` },
]);

export const cases: BkCase[] = [
  {
    from: `${F} testDockerfileADDFromURL`,
    title: 'ADD of a URL into a directory names the file after the URL path',
    dockerfile: 'FROM scratch\nADD $URL /dest/\n',
    url,
    expect: { files: { 'dest/foo': 'content1' } },
  },
  {
    from: `${F} testDockerfileAddArchive`,
    title: 'ADD of a local tar extracts it',
    dockerfile: 'FROM busybox\nADD t.tar /\n',
    context: { 't.tar': { tar: tarFiles } },
    expect: { files: { foo: 'content0' } },
  },
  {
    from: `${F} testDockerfileAddArchive`,
    title: 'ADD of a local tar.gz extracts it',
    dockerfile: 'FROM busybox\nADD t.tar.gz /\n',
    context: { 't.tar.gz': { tar: tarFiles, gzip: true } },
    expect: { files: { foo: 'content0' } },
  },
  {
    from: `${F} testDockerfileAddArchive`,
    title: 'ADD --unpack=false of a local tar.gz copies the archive',
    dockerfile: 'FROM busybox\nADD --unpack=false t.tar.gz /\n',
    context: { 't.tar.gz': { tar: tarFiles, gzip: true } },
    expect: { files: { foo: 'absent', 't.tar.gz': { type: 'file' } } },
  },
  {
    from: `${F} testDockerfileAddArchive`,
    title: 'COPY of a local tar.gz copies the archive',
    dockerfile: 'FROM busybox\nCOPY t.tar.gz /\n',
    context: { 't.tar.gz': { tar: tarFiles, gzip: true } },
    expect: { files: { foo: 'absent', 't.tar.gz': { type: 'file' } } },
  },
  {
    from: `${F} testDockerfileAddArchiveWithImpliedParentDir`,
    title: 'ADD of a tar whose entries imply parent directories creates them',
    dockerfile: 'FROM busybox\nADD t.tar.gz /\n',
    context: { 't.tar.gz': { tar: { 'x/y/foo': 'content0' }, gzip: true } },
    expect: { files: { 'x/y/foo': 'content0' } },
  },
  {
    from: `${F} testDockerfileAddChownArchive`,
    title: 'ADD --chown of a local tar owns the extracted files',
    dockerfile: 'FROM busybox\nADD --chown=100:200 t.tar /out/\n',
    context: { 't.tar': { tar: tarFiles } },
    expect: { files: { 'out/foo': { content: 'content0', uid: 100, gid: 200 }, out: { uid: 100, gid: 200 } } },
  },
  {
    from: `${F} testDockerfileAddArchiveWildcard`,
    title: 'ADD with a wildcard extracts every matching archive',
    dockerfile: 'FROM busybox\nADD *.tar /dest\n',
    context: { 't.tar': { tar: { foo: 'content0' } }, 'b.tar': { tar: { bar: 'content1' } } },
    expect: { files: { 'dest/foo': 'content0', 'dest/bar': 'content1' } },
  },
  {
    from: `${F} testDockerfileAddChownExpand`,
    title: 'ADD --chown expands ENV and ARG',
    dockerfile:
      'FROM busybox\nARG group\nENV owner 1000\nADD --chown=${owner}:${group} foo /\nRUN [ "$(stat -c "%u %G" /foo)" == "1000 nogroup" ]\n',
    context: { foo: 'foo-contents' },
    buildArgs: { group: 'nogroup' },
    expect: { files: { foo: { uid: 1000, gid: 65534 } } },
  },
  {
    from: `${F} testAddURLChmod`,
    title: 'ADD --chmod of a URL sets the mode, from an ARG too',
    dockerfile:
      'FROM busybox AS build\nADD --chmod=644 $URL /tmp/foo1\nADD --chmod=755 $URL /tmp/foo2\nADD --chmod=0413 $URL /tmp/foo3\nARG mode\nADD --chmod=${mode} $URL /tmp/foo4\n',
    url,
    buildArgs: { mode: '400' },
    expect: {
      files: {
        'tmp/foo1': { mode: '0644' },
        'tmp/foo2': { mode: '0755' },
        'tmp/foo3': { mode: '0413' },
        'tmp/foo4': { mode: '0400' },
      },
    },
  },
  {
    from: `${F} testAddInvalidChmod`,
    title: "ADD --chmod=64a is refused with BuildKit's message",
    dockerfile: 'FROM scratch\nADD --chmod=64a foo /\n',
    context: { foo: 'foo-contents' },
    expect: { error: "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777" },
  },
  {
    from: `${F} testAddInvalidChmod`,
    title: "ADD --chmod=10000 is refused with BuildKit's message",
    dockerfile: 'FROM scratch\nADD --chmod=10000 foo /\n',
    context: { foo: 'foo-contents' },
    expect: { error: "invalid chmod parameter: '10000'. it should be octal string and between 0 and 07777" },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum of a URL with the right digest',
    dockerfile: `FROM busybox\nADD --checksum=${sha} $URL /tmp/foo\n`,
    url,
    expect: { files: { 'tmp/foo': 'content1' } },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum and the URL expand ENV variables',
    dockerfile: `FROM busybox\nENV DIGEST=${sha}\nENV LINK=$URL\nADD --checksum=\${DIGEST} \${LINK} /tmp/foo\n`,
    url,
    expect: { files: { 'tmp/foo': 'content1' } },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum with a wrong digest fails',
    dockerfile: `FROM busybox\nADD --checksum=sha256:${'0'.repeat(64)} $URL /tmp/foo\n`,
    url,
    expect: { error: /digest mismatch|checksum/i },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum with md5 fails: unsupported digest algorithm',
    dockerfile: 'FROM busybox\nADD --checksum=md5:7e55db001d319a94b0b713529a756623 $URL /tmp/foo\n',
    url,
    expect: { error: 'unsupported digest algorithm' },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum with an unknown algorithm fails',
    dockerfile: `FROM busybox\nADD --checksum=unknown:${'0'.repeat(64)} $URL /tmp/foo\n`,
    url,
    expect: { error: 'unsupported digest algorithm' },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum with a malformed digest fails',
    dockerfile: 'FROM busybox\nADD --checksum=sha256:abc $URL /tmp/foo\n',
    url,
    expect: { error: /invalid checksum digest (format|length)/ },
  },
  {
    from: `${F} testAddChecksum`,
    title: 'ADD --checksum of a local file fails: checksum requires HTTP(S) or Git sources',
    dockerfile: `FROM busybox\nADD --checksum=${sha} foo /tmp/foo\n`,
    context: { foo: 'content1' },
    expect: { error: 'checksum requires HTTP(S) or Git sources' },
  },
  {
    from: `${F} testDockerfileAddArchiveThroughAbsoluteSymlink`,
    title: "ADD of a tar through the image's absolute symlink (var/run -> /run) extracts at the symlink's target",
    dockerfile: 'FROM scratch\nADD rootfs.tar /\nADD payload.tar /\n',
    context: { 'rootfs.tar': { bytes: rootfsTar }, 'payload.tar': { bytes: payloadTar } },
    expect: {
      files: {
        'var/run': { type: 'symlink', link: '/run' },
        'run/act/actions/broad/.git/HEAD': head,
        'run/act/actions/broad/.git/HEAD.link': head,
      },
      check: (t, { root }) => {
        const a = statSync(join(root!, 'run/act/actions/broad/.git/HEAD'));
        const b = statSync(join(root!, 'run/act/actions/broad/.git/HEAD.link'));
        t.is(a.ino, b.ino, 'HEAD.link is a hard link to HEAD');
      },
    },
  },
  {
    from: 'dockerfile2llb/convert_copy.go (BuildKit rule; issue 12)',
    title: "COPY of a URL fails: source can't be a URL for COPY",
    dockerfile: 'FROM busybox\nCOPY $URL /tmp/foo\n',
    url,
    expect: { error: "source can't be a URL for COPY" },
  },
];

declareCases(cases);
