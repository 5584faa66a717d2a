import test from 'ava';
import { DockerfileError, parseDockerfile } from '../../../builder/dockerfile/parse.js';
import type { Instruction } from '../../../builder/dockerfile/instructions.js';

/** only parses a Dockerfile (FROM added in front) and returns its last instruction. */
function only(body: string): Instruction {
  const { instructions } = parseDockerfile(`FROM scratch\n${body}\n`);
  const last = instructions.at(-1);
  if (!last) throw new Error('no instruction');
  return last;
}

const parses = test.macro({
  exec(t, body: string, expected: Record<string, unknown>) {
    t.like(only(body), expected);
  },
  title: (_title, body: string) => `${body.split('\n')[0]} parses into its typed instruction`,
});

test(parses, 'FROM --platform=linux/arm64 alpine:3.20 AS Builder', {
  kind: 'from',
  image: 'alpine:3.20',
  stage: 'builder',
  platform: 'linux/arm64',
  flags: { platform: ['linux/arm64'] },
});
test(parses, 'FROM ${BASE}', { kind: 'from', image: '${BASE}', line: 2, endLine: 2 });
test(parses, 'RUN echo "$HOME" && ls', {
  kind: 'run',
  command: { form: 'shell', script: 'echo "$HOME" && ls' },
  heredocs: [],
  files: [],
});
test(parses, 'RUN ["ls", "-la"]', {
  kind: 'run',
  command: { form: 'exec', args: ['ls', '-la'] },
  exec: { form: 'exec', args: ['ls', '-la'] },
});
test(parses, "RUN ['ls']", { kind: 'run', command: { form: 'shell', script: "['ls']" } });
test(
  parses,
  'RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=s --network=none --security=insecure make',
  {
    kind: 'run',
    mounts: ['type=cache,target=/root/.cache', 'type=secret,id=s'],
    network: 'none',
    security: 'insecure',
    command: { form: 'shell', script: 'make' },
  },
);
test(parses, 'CMD ["/app", "--serve"]', { kind: 'cmd', command: { form: 'exec', args: ['/app', '--serve'] } });
test(parses, 'CMD', { kind: 'cmd', command: { form: 'shell', script: '' } });
test(parses, 'ENTRYPOINT exec /app', { kind: 'entrypoint', command: { form: 'shell', script: 'exec /app' } });
test(parses, 'SHELL ["/bin/bash", "-eo", "pipefail", "-c"]', {
  kind: 'shell',
  shell: ['/bin/bash', '-eo', 'pipefail', '-c'],
});
test(parses, 'ENV A=1 B="two words" C=', {
  kind: 'env',
  legacy: false,
  pairs: [
    { key: 'A', value: '1' },
    { key: 'B', value: '"two words"' },
    { key: 'C', value: '' },
  ],
});
test(parses, 'ENV ONE TWO= THREE=world', {
  kind: 'env',
  legacy: true,
  pairs: [{ key: 'ONE', value: 'TWO= THREE=world' }],
});
test(parses, 'LABEL org.opencontainers.image.title="my app" version=1', {
  kind: 'label',
  pairs: [
    { key: 'org.opencontainers.image.title', value: '"my app"' },
    { key: 'version', value: '1' },
  ],
});
test(parses, 'ARG A B=2 C= D="x y"', {
  kind: 'arg',
  args: [{ key: 'A' }, { key: 'B', value: '2' }, { key: 'C', value: '' }, { key: 'D', value: '"x y"' }],
});
test(parses, 'EXPOSE 80 443/tcp 8000-8010/udp $PORT', {
  kind: 'expose',
  ports: ['80', '443/tcp', '8000-8010/udp', '$PORT'],
});
test(parses, 'USER app:app', { kind: 'user', user: 'app:app' });
test(parses, 'WORKDIR /srv/my app', { kind: 'workdir', path: '/srv/my app' });
test(parses, 'VOLUME /a /b', { kind: 'volume', paths: ['/a', '/b'] });
test(parses, 'VOLUME ["/data dir"]', { kind: 'volume', paths: ['/data dir'] });
test(parses, 'STOPSIGNAL SIGRTMIN+3', { kind: 'stopsignal', signal: 'SIGRTMIN+3' });
test(parses, 'STOPSIGNAL 9', { kind: 'stopsignal', signal: '9' });
test(parses, 'STOPSIGNAL $SIG', { kind: 'stopsignal', signal: '$SIG' });
test(parses, 'MAINTAINER Jane <jane@example.com>', { kind: 'maintainer', maintainer: 'Jane <jane@example.com>' });
test(parses, 'HEALTHCHECK NONE', { kind: 'healthcheck', health: { Test: ['NONE'] } });
test(
  parses,
  'HEALTHCHECK --interval=1m30s --timeout=500ms --start-period=0s --start-interval=2s --retries=5 CMD curl -f localhost',
  {
    kind: 'healthcheck',
    health: {
      Test: ['CMD-SHELL', 'curl -f localhost'],
      Interval: 90_000_000_000,
      Timeout: 500_000_000,
      StartInterval: 2_000_000_000,
      Retries: 5,
    },
  },
);
test(parses, 'HEALTHCHECK cmd ["/check", "-q"]', { kind: 'healthcheck', health: { Test: ['CMD', '/check', '-q'] } });
test(
  parses,
  'COPY --from=build --chown=app:app --chmod=0755 --link --parents --exclude=*.md --exclude=.git a b /dst/',
  {
    kind: 'copy',
    sources: ['a', 'b'],
    dest: '/dst/',
    from: 'build',
    chown: 'app:app',
    chmod: '0755',
    link: true,
    parents: true,
    exclude: ['*.md', '.git'],
    flags: {
      from: ['build'],
      chown: ['app:app'],
      chmod: ['0755'],
      link: ['true'],
      parents: ['true'],
      exclude: ['*.md', '.git'],
    },
  },
);
test(parses, 'COPY --link=false ["a b", "/c d/"]', { kind: 'copy', sources: ['a b'], dest: '/c d/', link: false });
test(parses, 'ADD --keep-git-dir --checksum=sha256:0123 --unpack=true https://example.com/x.tar.gz /x/', {
  kind: 'add',
  sources: ['https://example.com/x.tar.gz'],
  dest: '/x/',
  keepGitDir: true,
  checksum: 'sha256:0123',
  unpack: true,
});
test(parses, 'ONBUILD COPY . /app', {
  kind: 'onbuild',
  expression: 'COPY . /app',
  trigger: { kind: 'copy', sources: ['.'], dest: '/app' },
});

test('a RUN heredoc alone runs its body as the script', (t) => {
  const run = only('RUN <<EOF\napt-get update\napt-get install -y curl\nEOF');
  t.like(run, {
    kind: 'run',
    line: 2,
    endLine: 5,
    raw: 'RUN <<EOF',
    command: { form: 'shell', script: '<<EOF' },
    exec: { form: 'shell', script: 'apt-get update\napt-get install -y curl\n' },
    files: [],
  });
});

test('a RUN heredoc starting with #! becomes an executable file under /dev/pipes', (t) => {
  const run = only('RUN <<-SCRIPT\n\t#!/usr/bin/env python3\n\tprint("hi")\n\tSCRIPT');
  // <<- strips the tabs first, then the body starts with #! (BuildKit checks the chomped body:
  // dockerfile2llb dispatchRun, and dockerfile_heredoc_test.go testRunShebangHeredoc)
  t.like(run, {
    exec: { form: 'shell', script: '/dev/pipes/SCRIPT' },
    files: [{ path: '/dev/pipes/SCRIPT', content: '#!/usr/bin/env python3\nprint("hi")\n', mode: 0o755 }],
  });
  const shebang = only('RUN <<SCRIPT\n#!/usr/bin/env python3\nprint("hi")\nSCRIPT');
  t.like(shebang, {
    exec: { form: 'shell', script: '/dev/pipes/SCRIPT' },
    files: [{ path: '/dev/pipes/SCRIPT', content: '#!/usr/bin/env python3\nprint("hi")\n', mode: 0o755 }],
  });
});

test('a RUN with a command and several heredocs hands them to the shell', (t) => {
  const run = only('RUN <<A cat > /a && <<-"B" cat > /b\na $x\nA\n\tb\n\tB');
  t.like(run, {
    exec: { form: 'shell', script: '<<A cat > /a && <<-"B" cat > /b\na $x\nA\n\tb\nB' },
    heredocs: [
      { name: 'A', content: 'a $x\n', expand: true, chomp: false, fd: 0 },
      { name: 'B', content: 'b\n', expand: false, chomp: true, fd: 0 },
    ],
  });
});

test('COPY heredoc sources become inline files, in order, chomped and flagged for expansion', (t) => {
  const copy = only("COPY --chmod=644 <<one <<-'two' plain /etc/\nhello $NAME\none\n\tbye\n\ttwo");
  t.like(copy, {
    kind: 'copy',
    sources: ['plain'],
    dest: '/etc/',
    chmod: '644',
    inline: [
      { name: 'one', content: 'hello $NAME\n', expand: true },
      { name: 'two', content: 'bye\n', expand: false },
    ],
  });
});

test('ONBUILD keeps heredoc bodies in its expression, as BuildKit stores it', (t) => {
  const onbuild = only('ONBUILD RUN <<EOF\necho hi\nEOF');
  t.like(onbuild, {
    kind: 'onbuild',
    expression: 'RUN <<EOF\necho hi\nEOF',
    trigger: { kind: 'run', exec: { script: 'echo hi\n' } },
  });
});

test('directives are returned and syntax is reported as a notice', (t) => {
  const r = parseDockerfile('# syntax=docker/dockerfile:1.7\n# escape=`\nFROM a\nRUN x `\n  y\n');
  t.deepEqual(r.directives, { escape: '`', syntax: 'docker/dockerfile:1.7' });
  t.like(r.instructions[1], { command: { form: 'shell', script: 'x   y' } });
  t.like(r.warnings[0], { line: 1, code: 'SyntaxDirective' });
});

test('legacy ENV and MAINTAINER produce lint warnings', (t) => {
  const r = parseDockerfile('FROM a\nENV k v\nMAINTAINER me\n', { file: 'ctx/Dockerfile' });
  t.deepEqual(
    r.warnings.map((w) => [w.file, w.line, w.code]),
    [
      ['ctx/Dockerfile', 2, 'LegacyKeyValueFormat'],
      ['ctx/Dockerfile', 3, 'MaintainerDeprecated'],
    ],
  );
});

test('a fragment such as a stored ONBUILD trigger parses without FROM', (t) => {
  const r = parseDockerfile('RUN <<EOF\necho hi\nEOF', { file: 'onbuild trigger', fragment: true });
  t.like(r.instructions, [{ kind: 'run', exec: { form: 'shell', script: 'echo hi\n' } }]);
  t.throws(() => parseDockerfile('FORM x', { file: 'onbuild trigger', fragment: true }), {
    message: 'onbuild trigger:1: unknown instruction: FORM (did you mean FROM?)',
  });
});

test('ARG may come before FROM', (t) => {
  const r = parseDockerfile('ARG V=1\nFROM a:$V\n');
  t.deepEqual(
    r.instructions.map((i) => i.kind),
    ['arg', 'from'],
  );
});

test('DockerfileError carries the file, the line and the code', (t) => {
  const err = t.throws(() => parseDockerfile('FROM a\n\nFORM b\n', { file: 'app/Dockerfile' }), {
    instanceOf: DockerfileError,
  });
  t.is(err?.file, 'app/Dockerfile');
  t.is(err?.line, 3);
  t.is(err?.code, 'E_DOCKERFILE');
  t.is(err?.reason, 'unknown instruction: FORM (did you mean FROM?)');
});

// Every refusal names file:line and says what is wrong, with the instruction.
const refuses = test.macro({
  exec(t, dockerfile: string, message: string) {
    const err = t.throws(() => parseDockerfile(dockerfile), { instanceOf: DockerfileError });
    t.is(err?.message, message);
  },
  title: (_title, dockerfile: string, message: string) => `${JSON.stringify(dockerfile)} is refused: ${message}`,
});

test(refuses, 'FROM a\nFORM b\n', 'Dockerfile:2: unknown instruction: FORM (did you mean FROM?)');
test(refuses, 'FROM a\nSQUASH\n', 'Dockerfile:2: unknown instruction: SQUASH');
test(
  refuses,
  'FROM a\nCOPY --form=b x y\n',
  'Dockerfile:2: unknown flag: --form (did you mean from?) (valid flags for COPY: --chmod, --chown, --exclude, --from, --link, --parents)',
);
test(refuses, 'FROM a\nCMD --doit ["a"]\n', 'Dockerfile:2: unknown flag: --doit (CMD takes no flags)');
test(refuses, 'FROM a\nCOPY --from=x --from=y a b\n', 'Dockerfile:2: duplicate flag --from for COPY');
test(refuses, 'FROM a\nCOPY --from a b\n', 'Dockerfile:2: flag --from for COPY needs a value (--from=…)');
test(refuses, 'FROM a\nCOPY --link=yes a b\n', 'Dockerfile:2: flag --link for COPY must be true or false, not "yes"');
test(refuses, 'FROM a\nRUN --mount type=cache make\n', 'Dockerfile:2: flag --mount for RUN needs a value (--mount=…)');
test(refuses, 'FROM\n', 'Dockerfile:1: FROM requires either one or three arguments: FROM image [AS name]');
test(refuses, 'FROM a b c\n', 'Dockerfile:1: FROM requires either one or three arguments: FROM image [AS name]');
test(
  refuses,
  'FROM a AS 1st\n',
  'Dockerfile:1: invalid name for build stage: "1st", name can\'t start with a number or contain symbols',
);
test(refuses, 'RUN x\nFROM a\n', 'Dockerfile:1: RUN before the first FROM: only ARG may come before FROM');
test(refuses, 'ARG A\n', 'Dockerfile: dockerfile contains no stages to build');
test(refuses, 'FROM a\nRUN\n', 'Dockerfile:2: RUN requires at least one argument');
test(
  refuses,
  'FROM a\nCOPY x\n',
  'Dockerfile:2: COPY requires at least two arguments, but only one was provided. Destination could not be determined',
);
test(
  refuses,
  'FROM a\nADD\n',
  'Dockerfile:2: ADD requires at least two arguments: one or more sources and a destination',
);
test(refuses, 'FROM a\nCOPY x <<EOF\nbody\nEOF\n', 'Dockerfile:2: COPY cannot accept a heredoc as a destination');
test(
  refuses,
  'FROM a\nSHELL /bin/bash -c\n',
  'Dockerfile:2: SHELL requires the arguments to be in JSON form, like SHELL ["/bin/sh", "-c"]',
);
test(refuses, 'FROM a\nSHELL []\n', 'Dockerfile:2: SHELL requires at least one argument');
test(refuses, 'FROM a\nENV\n', 'Dockerfile:2: ENV requires at least one argument');
test(refuses, 'FROM a\nENV PATH\n', 'Dockerfile:2: ENV must have two arguments (ENV PATH has no value)');
test(refuses, 'FROM a\nENV =x\n', 'Dockerfile:2: ENV names can not be blank');
test(refuses, 'FROM a\nLABEL a=b c\n', 'Dockerfile:2: LABEL: can\'t find = in "c"; it must be of the form name=value');
test(refuses, 'FROM a\nARG =1\n', 'Dockerfile:2: ARG names can not be blank (in "=1")');
test(refuses, 'FROM a\nEXPOSE\n', 'Dockerfile:2: EXPOSE requires at least one argument');
test(refuses, 'FROM a\nUSER\n', 'Dockerfile:2: USER requires exactly one argument');
test(refuses, 'FROM a\nWORKDIR\n', 'Dockerfile:2: WORKDIR requires exactly one argument');
test(refuses, 'FROM a\nVOLUME [""]\n', 'Dockerfile:2: VOLUME specified can not be an empty string');
test(
  refuses,
  'FROM a\nSTOPSIGNAL SIGFOO\n',
  'Dockerfile:2: invalid STOPSIGNAL "SIGFOO": expected a signal name (SIGTERM, TERM…) or number',
);
test(
  refuses,
  'FROM a\nSTOPSIGNAL 0\n',
  'Dockerfile:2: invalid STOPSIGNAL "0": expected a signal name (SIGTERM, TERM…) or number',
);
test(refuses, 'FROM a\nHEALTHCHECK\n', 'Dockerfile:2: HEALTHCHECK requires at least one argument');
test(refuses, 'FROM a\nHEALTHCHECK NONE x\n', 'Dockerfile:2: HEALTHCHECK NONE takes no arguments');
test(
  refuses,
  'FROM a\nHEALTHCHECK --interval=5s NONE\n',
  'Dockerfile:2: HEALTHCHECK NONE takes no flags (got --interval=5s)',
);
test(refuses, 'FROM a\nHEALTHCHECK CMD\n', 'Dockerfile:2: Missing command after HEALTHCHECK CMD');
test(
  refuses,
  'FROM a\nHEALTHCHECK CONNECT TCP 7000\n',
  'Dockerfile:2: Unknown type "CONNECT" in HEALTHCHECK (try CMD)',
);
test(
  refuses,
  'FROM a\nHEALTHCHECK --interval=5 CMD x\n',
  'Dockerfile:2: HEALTHCHECK --interval: time: missing unit in duration "5"',
);
test(
  refuses,
  'FROM a\nHEALTHCHECK --timeout=10us CMD x\n',
  'Dockerfile:2: HEALTHCHECK --timeout cannot be less than 1ms (got 10us)',
);
test(
  refuses,
  'FROM a\nHEALTHCHECK --retries=-1 CMD x\n',
  'Dockerfile:2: HEALTHCHECK --retries cannot be negative (-1)',
);
test(
  refuses,
  'FROM a\nHEALTHCHECK --retries=three CMD x\n',
  'Dockerfile:2: HEALTHCHECK --retries must be a whole number, not "three"',
);
test(refuses, 'FROM a\nONBUILD\n', 'Dockerfile:2: ONBUILD requires at least one argument');
test(refuses, 'FROM a\nONBUILD ONBUILD RUN x\n', "Dockerfile:2: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed");
test(refuses, 'FROM a\nONBUILD FROM b\n', "Dockerfile:2: FROM isn't allowed as an ONBUILD trigger");
test(refuses, 'FROM a\nonbuild maintainer me\n', "Dockerfile:2: MAINTAINER isn't allowed as an ONBUILD trigger");
test(
  refuses,
  'FROM a\nONBUILD COPY --chwon=1 a b\n',
  'Dockerfile:2: ONBUILD COPY: unknown flag: --chwon (did you mean chown?) (valid flags for COPY: --chmod, --chown, --exclude, --from, --link, --parents)',
);
test(
  refuses,
  'FROM a\nRUN <<EOF\nnever ends\n',
  'Dockerfile:2: unterminated heredoc <<EOF: no line "EOF" before the end of the file',
);
test(
  refuses,
  'FROM a\nRUN <<../x\n#!/bin/sh\n../x\n',
  'Dockerfile:2: RUN: heredoc name "../x" cannot be used as a file name for its #! script',
);
test(
  refuses,
  'FROM a\nCMD ["a", 1]\n',
  'Dockerfile:2: when using JSON array syntax, arrays must be comprised of strings only',
);
test(refuses, '# escape=x\nFROM a\n', "Dockerfile:1: invalid escape character 'x': it must be ` or \\");
test(refuses, '# escape=`\n# escape=\\\nFROM a\n', 'Dockerfile:2: only one escape parser directive can be used');
test(refuses, '\n# only a comment\n', 'Dockerfile: file with no instructions');
test(refuses, 'FROM a\n\\\n', 'Dockerfile:2: empty instruction: a line continuation with nothing after it');
