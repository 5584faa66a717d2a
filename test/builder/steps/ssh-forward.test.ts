// builder/ssh-forward.ts without root: buildx's --ssh syntax and the read-only agent proxy against a real unix
// socket server that speaks the agent protocol (the builds themselves: test/builder/buildkit/ssh.test.ts).
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSshFlag, proxyAgent, SshForwarder } from '../../../builder/ssh-forward.js';

const dir = await mkdtemp(join(tmpdir(), 'tsbuild-sshf-'));
test.after.always(() => rm(dir, { recursive: true, force: true }));

test('--ssh default takes $SSH_AUTH_SOCK', (t) => {
  t.deepEqual(parseSshFlag('default', { SSH_AUTH_SOCK: '/s' }), { id: 'default', paths: ['/s'] });
  t.deepEqual(parseSshFlag('other', { SSH_AUTH_SOCK: '/s' }), { id: 'other', paths: ['/s'] });
});

test('--ssh default without $SSH_AUTH_SOCK is buildx error', (t) => {
  const err = t.throws(() => parseSshFlag('default', {}));
  t.regex(err!.message, /invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set/);
});

test('--ssh ID=KEY,KEY lists the keys', (t) => {
  t.deepEqual(parseSshFlag('gh=/k1,/k2', {}), { id: 'gh', paths: ['/k1', '/k2'] });
});

test('a duplicate --ssh id is refused', async (t) => {
  const sock = join(dir, 'dup.sock');
  const server = createServer().listen(sock);
  t.teardown(() => server.close());
  await new Promise((r) => server.once('listening', r));
  const src = { id: 'a', paths: [sock] };
  const err = await t.throwsAsync(SshForwarder.open([src, src]));
  t.regex(err!.message, /duplicate agent ID "a"/);
});

test('a missing key file is named in the error', async (t) => {
  const err = await t.throwsAsync(SshForwarder.open([{ id: 'x', paths: [join(dir, 'nope')] }]));
  t.regex(err!.message, /--ssh x: ENOENT: .*nope/);
});

test('a file that is not a key is refused when the build starts', async (t) => {
  await writeFile(join(dir, 'notakey'), 'hello\n', { mode: 0o600 });
  const err = await t.throwsAsync(SshForwarder.open([{ id: 'x', paths: [join(dir, 'notakey')] }]));
  t.regex(err!.message, /--ssh x: failed to parse .*notakey/);
});

const frame = (type: number, body: number[] = []): Buffer => Buffer.from([0, 0, 0, 1 + body.length, type, ...body]);

test('the proxy answers only list and sign from the agent, refuses the rest in order, and closes upstream', async (t) => {
  const up = join(dir, 'agent.sock');
  const seen: number[] = [];
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((r) => (upstreamClosed = r));
  const agent = createServer((c: Socket) => {
    c.on('data', (d: Buffer) => {
      for (let i = 0; i + 5 <= d.length; i += 4 + d.readUInt32BE(i)) {
        seen.push(d[i + 4]!);
        c.write(frame(12, [0, 0, 0, 0])); // no identities
      }
    });
    c.on('close', () => upstreamClosed());
  }).listen(up);
  const front = join(dir, 'front.sock');
  const proxy = createServer({ allowHalfOpen: true }, (c) => proxyAgent(c, up)).listen(front);
  t.teardown(() => {
    agent.close();
    proxy.close();
  });
  await new Promise((r) => proxy.once('listening', r));
  const client = connect(front);
  const got: Buffer[] = [];
  client.on('data', (d: Buffer) => got.push(d));
  // remove all (19), list (11), lock (22), extension (27), list (11): written at once
  client.write(Buffer.concat([frame(19), frame(11), frame(22), frame(27, [0, 0, 0, 0]), frame(11)]));
  client.end();
  await new Promise((r) => client.on('close', r));
  const replies = Buffer.concat(got);
  t.deepEqual(
    [...replies],
    [...frame(5), ...frame(12, [0, 0, 0, 0]), ...frame(5), ...frame(5), ...frame(12, [0, 0, 0, 0])],
  );
  t.deepEqual(seen, [11, 11], 'only the list requests reached the agent');
  await closed; // the agent's connection ends with the client's
  t.pass();
});
