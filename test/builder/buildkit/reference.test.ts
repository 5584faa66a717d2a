// Examples of BuildKit's frontend/dockerfile/docs/reference.md whose result the page states, replayed offline on
// busybox (see harness.ts and README.md). `from` names the section; `ubuntu`/`alpine` bases read as busybox.
import type { Image } from '../../../layers/store/image.js';
import { declareCases, type BkCase } from './harness.js';

const R = 'docs/reference.md';

/** the image's Env as an object */
const envOf = (image: Image): Record<string, string> =>
  Object.fromEntries(
    (image.config.config?.Env ?? []).map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]),
  );

export const cases: BkCase[] = [
  {
    from: `${R} Environment replacement`,
    title: 'ENV values substitute in WORKDIR, ADD and COPY; \\$FOO stays literal',
    dockerfile: 'FROM busybox\nENV FOO=/bar\nWORKDIR ${FOO}\nADD . $FOO\nCOPY \\$FOO /quux\n',
    context: { $FOO: 'dollar-foo', a: 'a' },
    expect: { config: { WorkingDir: '/bar' }, files: { 'bar/a': 'a', quux: 'dollar-foo' } },
  },
  {
    from: `${R} Environment replacement`,
    title: 'a variable keeps one value through an instruction: def is hello, ghi is bye',
    dockerfile: 'FROM busybox\nENV abc=hello\nENV abc=bye def=$abc\nENV ghi=$abc\n',
    expect: { check: (t, { image }) => t.like(envOf(image), { abc: 'bye', def: 'hello', ghi: 'bye' }) },
  },
  {
    from: `${R} Environment replacement (modifiers)`,
    title: '${v:-w}, ${v-w}, ${v:+w}, ${v+w} follow the documented rules for set, empty and unset variables',
    dockerfile: `FROM busybox
ENV set=x empty=
ENV a=\${set:-w} b=\${empty:-w} c=\${unset:-w} d=\${empty-w} e=\${unset-w}
ENV f=\${set:+w} g=\${empty:+w} h=\${empty+w} i=\${unset+w}
`,
    expect: {
      check: (t, { image }) => {
        t.like(envOf(image), { a: 'x', b: 'w', c: 'w', d: '', e: 'w', f: 'w', g: '', h: 'w', i: '' });
      },
    },
  },
  {
    from: `${R} Environment replacement (pattern modifiers)`,
    title: '#, ##, %, %%, / and // remove and replace patterns as the examples show',
    dockerfile: `FROM busybox
ENV str=foobarbaz
ENV a=\${str#f*b} b=\${str##f*b} c=\${str%b*} d=\${str%%b*} e=\${str/ba/fo} f=\${str//ba/fo}
`,
    expect: {
      check: (t, { image }) => {
        t.like(envOf(image), { a: 'arbaz', b: 'az', c: 'foobar', d: 'foo', e: 'fooforbaz', f: 'fooforfoz' });
      },
    },
  },
  {
    from: `${R} ENV`,
    title: 'ENV values take quotes and escaped spaces, one per line or several at once',
    dockerfile:
      'FROM busybox\nENV MY_NAME="John Doe"\nENV MY_DOG=Rex\\ The\\ Dog\nENV MY_CAT=fluffy\nENV A_NAME="John Doe" A_DOG=Rex\\ The\\ Dog \\\n    A_CAT=fluffy\n',
    expect: {
      check: (t, { image }) => {
        const env = image.config.config?.Env ?? [];
        for (const e of [
          'MY_NAME=John Doe',
          'MY_DOG=Rex The Dog',
          'MY_CAT=fluffy',
          'A_NAME=John Doe',
          'A_DOG=Rex The Dog',
          'A_CAT=fluffy',
        ])
          t.true(env.includes(e), e);
      },
    },
  },
  {
    from: `${R} LABEL`,
    title: 'LABEL with quoted keys and values, continuation lines and several labels per line',
    dockerfile: `FROM busybox
LABEL "com.example.vendor"="ACME Incorporated"
LABEL com.example.label-with-value="foo"
LABEL version="1.0"
LABEL description="This text illustrates \\
that label-values can span multiple lines."
LABEL multi.label1="value1" \\
      multi.label2="value2" \\
      other="value3"
`,
    expect: {
      config: {
        Labels: {
          'com.example.vendor': 'ACME Incorporated',
          'com.example.label-with-value': 'foo',
          version: '1.0',
          description: 'This text illustrates that label-values can span multiple lines.',
          'multi.label1': 'value1',
          'multi.label2': 'value2',
          other: 'value3',
        },
      },
    },
  },
  {
    from: `${R} WORKDIR`,
    title: 'a relative WORKDIR is relative to the previous one: pwd is /a/b/c',
    dockerfile: 'FROM busybox\nWORKDIR /a\nWORKDIR b\nWORKDIR c\nRUN pwd > /pwd\n',
    expect: { files: { pwd: '/a/b/c\n' }, config: { WorkingDir: '/a/b/c' } },
  },
  {
    from: `${R} WORKDIR`,
    title:
      'WORKDIR $DIRPATH/$DIRNAME with DIRNAME unset: pwd is /path (the page says /path/$DIRNAME; BuildKit expands an unset variable to nothing, dockerfile2llb without SkipUnsetEnv)',
    dockerfile: 'FROM busybox\nENV DIRPATH=/path\nWORKDIR $DIRPATH/$DIRNAME\nRUN pwd > /pwd\n',
    expect: { files: { pwd: '/path\n' } },
  },
  {
    from: `${R} ARG Scope`,
    title: 'an ARG is in effect from its line on: USER is some_user before it and what_user after',
    dockerfile: 'FROM busybox\nUSER ${username:-some_user}\nARG username\nUSER $username\n',
    buildArgs: { username: 'what_user' },
    expect: {
      config: { User: 'what_user' },
      history: [
        { createdBy: 'USER some_user', emptyLayer: true },
        { createdBy: 'ARG username', emptyLayer: true },
        { createdBy: 'USER what_user', emptyLayer: true },
      ],
    },
  },
  {
    from: `${R} Understand how ARG and FROM interact`,
    title: 'an ARG before FROM names the base and, redeclared without a value, is seen in the stage',
    dockerfile: 'ARG VERSION=latest\nFROM busybox:$VERSION\nARG VERSION\nRUN echo $VERSION > image_version\n',
    expect: { files: { image_version: 'latest\n' } },
  },
  {
    from: `${R} Using ARG variables`,
    title: 'ENV wins over an ARG of the same name: the RUN sees v1.0.0, not the build arg',
    dockerfile: 'FROM busybox\nARG CONT_IMG_VER\nENV CONT_IMG_VER=v1.0.0\nRUN echo $CONT_IMG_VER > /v\n',
    buildArgs: { CONT_IMG_VER: 'v2.0.1' },
    expect: { files: { v: 'v1.0.0\n' } },
  },
  {
    from: `${R} Using ARG variables`,
    title: 'ENV X=${X:-v1.0.0} persists the default when no build arg is given',
    dockerfile:
      'FROM busybox\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nRUN echo $CONT_IMG_VER > /v\n',
    expect: { files: { v: 'v1.0.0\n' }, check: (t, { image }) => t.is(envOf(image).CONT_IMG_VER, 'v1.0.0') },
  },
  {
    from: `${R} Using ARG variables`,
    title: 'ENV X=${X:-v1.0.0} persists the build arg when one is given',
    dockerfile:
      'FROM busybox\nARG CONT_IMG_VER\nENV CONT_IMG_VER=${CONT_IMG_VER:-v1.0.0}\nRUN echo $CONT_IMG_VER > /v\n',
    buildArgs: { CONT_IMG_VER: 'v2.0.1' },
    expect: { files: { v: 'v2.0.1\n' } },
  },
  {
    from: `${R} COPY --parents`,
    title: 'COPY without --parents flattens same-named files; with it, x/a.txt and y/a.txt keep their parents',
    dockerfile: 'FROM scratch\nCOPY ./x/a.txt ./y/a.txt /no_parents/\nCOPY --parents ./x/a.txt ./y/a.txt /parents/\n',
    context: { 'x/a.txt': 'xa', 'y/a.txt': 'ya' },
    expect: {
      files: { 'no_parents/a.txt': 'ya', 'parents/x/a.txt': 'xa', 'parents/y/a.txt': 'ya', 'no_parents/x': 'absent' },
    },
  },
  {
    from: `${R} COPY --parents`,
    title: 'COPY --parents ./x/./y/*.txt keeps only the parents after the ./ pivot',
    dockerfile: 'FROM scratch\nCOPY --parents ./x/./y/*.txt /parents/\n',
    context: { 'x/y/a.txt': 'a', 'x/y/b.txt': 'b' },
    expect: { files: { 'parents/y/a.txt': 'a', 'parents/y/b.txt': 'b', 'parents/x': 'absent' } },
  },
  {
    from: `${R} COPY --parents`,
    title: 'COPY --parents ./src/**/*.txt matches at every depth, including none',
    dockerfile: 'FROM scratch\nCOPY --parents ./src/**/*.txt /parents/\n',
    context: { 'src/a.txt': 'a', 'src/x/b.txt': 'b', 'src/x/y/c.txt': 'c', 'src/x/y/d.md': 'd' },
    expect: {
      files: {
        'parents/src/a.txt': 'a',
        'parents/src/x/b.txt': 'b',
        'parents/src/x/y/c.txt': 'c',
        'parents/src/x/y/d.md': 'absent',
      },
    },
  },
  {
    from: `${R} COPY --exclude`,
    title: 'COPY --exclude=*.txt hom* copies what starts with hom but no .txt file',
    dockerfile: 'FROM scratch\nCOPY --exclude=*.txt hom* /mydir/\n',
    context: { 'home.txt': 't', 'homer.md': 'm', 'homes.go': 'g' },
    expect: { files: { 'mydir/home.txt': 'absent', 'mydir/homer.md': 'm', 'mydir/homes.go': 'g' } },
  },
  {
    from: `${R} COPY --exclude`,
    title: 'several --exclude patterns each leave their matches out',
    dockerfile: 'FROM scratch\nCOPY --exclude=*.txt --exclude=*.md hom* /mydir/\n',
    context: { 'home.txt': 't', 'homer.md': 'm', 'homes.go': 'g' },
    expect: { files: { 'mydir/home.txt': 'absent', 'mydir/homer.md': 'absent', 'mydir/homes.go': 'g' } },
  },
  {
    from: `${R} ADD (Source)`,
    title: 'ADD of ../something and something/ reads the context path with the climb and the slash removed',
    dockerfile: 'FROM scratch\nADD ../something /a\nADD something/ /b\n',
    context: { 'something/f': 'f' },
    expect: { files: { 'a/f': 'f', 'b/f': 'f', a: { type: 'dir' } } },
  },
  {
    from: `${R} Example: Creating inline files`,
    title: 'COPY <<EOF greeting.txt writes hello world',
    dockerfile: 'FROM busybox\nCOPY <<EOF greeting.txt\nhello world\nEOF\n',
    expect: { files: { 'greeting.txt': 'hello world\n' } },
  },
  {
    from: `${R} Example: Creating inline files`,
    title: 'COPY <<-EOT expands ARGs at build time: the script prints hello bar',
    dockerfile:
      'FROM busybox\nARG FOO=bar\nCOPY <<-EOT /script.sh\n  echo "hello ${FOO}"\nEOT\nRUN sh /script.sh > /out\n',
    expect: { files: { out: 'hello bar\n', 'script.sh': '  echo "hello bar"\n' } },
  },
  {
    from: `${R} Example: Creating inline files`,
    title: 'COPY <<-"EOT" keeps ${FOO} for the script to read at run time',
    dockerfile:
      'FROM busybox\nARG FOO=bar\nCOPY <<-"EOT" /script.sh\n  echo "hello ${FOO}"\nEOT\nRUN FOO=world sh /script.sh > /out\n',
    expect: { files: { out: 'hello world\n', 'script.sh': '  echo "hello ${FOO}"\n' } },
  },
  {
    from: `${R} Example: Running a multi-line script`,
    title: 'RUN <<EOT bash-style: the heredoc lines run in order in one shell',
    dockerfile: 'FROM busybox\nRUN <<EOT\n  set -ex\n  echo one > /steps\n  echo two >> /steps\nEOT\n',
    expect: { files: { steps: 'one\ntwo\n' } },
  },
  {
    from: `${R} EXPOSE`,
    title: 'EXPOSE defaults to tcp and takes /udp; both protocols may be exposed for one port',
    dockerfile: 'FROM busybox\nEXPOSE 80/udp\nEXPOSE 80/tcp\n',
    expect: { config: { ExposedPorts: { '80/tcp': {}, '80/udp': {} } } },
  },
];

declareCases(cases);
