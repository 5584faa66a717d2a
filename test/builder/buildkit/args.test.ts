// BuildKit's frontend/dockerfile/dockerfile_args_test.go, replayed offline (see harness.ts and README.md).
import { readFileSync } from 'node:fs';
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_args_test.go';

const targetStage = (last: string): string =>
  `FROM busybox AS base\nWORKDIR /out\nRUN echo -n "value:$TARGETSTAGE" > /out/first\nARG TARGETSTAGE\nRUN echo -n "value:$TARGETSTAGE" > /out/second\n\nFROM scratch AS foo\nCOPY --from=base /out/ /\n\n${last}\nCOPY --from=base /out/ /\n`;

const defaultEnv = `ARG image=idlebox
FROM busy\${image#idle} AS build
ARG my_arg
ENV my_arg "my_arg=\${my_arg:-def_val}"
ENV my_trimmed_arg "\${my_arg%%e*}"
COPY myscript.sh myscript.sh
RUN ./myscript.sh $my_arg $my_trimmed_arg
FROM scratch
COPY --from=build /out /out
`;
const script = { content: '#!/bin/sh\necho -n $my_arg $* > /out\n', mode: 0o700 };

export const cases: BkCase[] = [
  {
    from: `${F} testGlobalArg`,
    title: 'a global ARG names the base image tag, overridden by a build arg',
    dockerfile: 'ARG tag=nosuchtag\nFROM busybox:${tag}\n',
    buildArgs: { tag: 'latest' },
    expect: {},
  },
  {
    from: `${F} testGlobalArgErrors`,
    title: 'a global ARG with ${FOO:?msg} and no value fails with the message',
    dockerfile: 'ARG FOO=${FOO:?"custom error"}\nFROM busybox\n',
    expect: { error: 'FOO: custom error' },
  },
  {
    from: `${F} testGlobalArgErrors`,
    title: 'a global ARG with ${FOO:?msg} builds when the build arg is given',
    dockerfile: 'ARG FOO=${FOO:?"custom error"}\nFROM busybox\n',
    buildArgs: { FOO: 'bar' },
    expect: {},
  },
  {
    from: `${F} testArgDefaultExpansion`,
    title: 'an ARG default of ${FOO:?msg} fails when FOO has no value',
    dockerfile: 'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
    expect: { error: 'FOO: foo missing' },
  },
  {
    from: `${F} testArgDefaultExpansion`,
    title: 'an ARG default of ${FOO:?msg} builds when FOO is given',
    dockerfile: 'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
    buildArgs: { FOO: '123' },
    expect: {},
  },
  {
    from: `${F} testArgDefaultExpansion`,
    title: 'an ARG default of ${FOO:?msg} is not evaluated when the ARG itself is given',
    dockerfile: 'FROM scratch\nARG FOO\nARG BAR=${FOO:?"foo missing"}\n',
    buildArgs: { BAR: '123' },
    expect: {},
  },
  {
    from: `${F} testMultiArgs`,
    title: 'one ARG line declares several args, quoted values keep spaces, global ones are redeclared',
    dockerfile:
      'ARG a1="foo bar" a2=box\nARG a3="$a2-foo"\nFROM busy$a2 AS build\nARG a3 a4="123 456" a1\nRUN echo -n "$a1:$a3:$a4" > /out\nFROM scratch\nCOPY --from=build /out .\n',
    expect: { files: { out: 'foo bar:box-foo:123 456' } },
  },
  {
    from: `${F} testQuotedMetaArgs`,
    title: 'a global ARG built from another is expanded before a stage redeclares it',
    dockerfile:
      'ARG a1="box"\nARG a2="$a1-foo"\nFROM busy$a1 AS build\nARG a2\nARG a3="bar-$a2"\nRUN echo -n $a3 > /out\nFROM scratch\nCOPY --from=build /out .\n',
    expect: { files: { out: 'bar-box-foo' } },
  },
  {
    from: `${F} testTargetStageNameArg`,
    title: 'TARGETSTAGE is the --target stage once declared, and empty before',
    dockerfile: targetStage('FROM scratch'),
    target: 'foo',
    expect: { files: { first: 'value:', second: 'value:foo' } },
  },
  {
    from: `${F} testTargetStageNameArg`,
    title: 'TARGETSTAGE is "default" when the final stage has no name',
    dockerfile: targetStage('FROM scratch'),
    expect: { files: { first: 'value:', second: 'value:default' } },
  },
  {
    from: `${F} testTargetStageNameArg`,
    title: 'TARGETSTAGE is the name of the final stage when it has one',
    dockerfile: targetStage('FROM scratch AS final'),
    expect: { files: { first: 'value:', second: 'value:final' } },
  },
  {
    from: `${F} testBuiltinArgs`,
    title: 'proxy build args reach RUN without an ARG; declared args without a value are empty',
    dockerfile:
      'FROM busybox AS build\nARG FOO\nARG BAR\nARG BAZ=bazcontent\nRUN echo -n $HTTP_PROXY::$NO_PROXY::$FOO::$BAR::$BAZ > /out\nFROM scratch\nCOPY --from=build /out /\n',
    buildArgs: { FOO: 'foocontents', http_proxy: 'hpvalue', NO_PROXY: 'npvalue' },
    expect: { files: { out: 'hpvalue::npvalue::foocontents::::bazcontent' } },
  },
  {
    from: `${F} testBuiltinArgs`,
    title: 'proxy build args are not written to the history of the image',
    dockerfile: 'FROM busybox\nARG FOO\nRUN echo -n $HTTP_PROXY::$FOO > /out\n',
    buildArgs: { FOO: 'foocontents', http_proxy: 'hpvalue' },
    expect: {
      history: [{ createdBy: 'ARG FOO', emptyLayer: true }, { createdBy: /^RUN \|1 FOO=foocontents \/bin\/sh -c/ }],
    },
  },
  {
    from: `${F} testDefaultEnvWithArgs`,
    title: 'ENV from an ARG with ${x:-default} and ${x%%pattern}, when the arg is empty',
    dockerfile: defaultEnv,
    context: { 'myscript.sh': script },
    buildArgs: { my_arg: '' },
    expect: { files: { out: 'my_arg=def_val my_arg=def_val my_arg=d' } },
  },
  {
    from: `${F} testDefaultEnvWithArgs`,
    title: 'ENV from an ARG with ${x:-default} and ${x%%pattern}, when the arg is given',
    dockerfile: defaultEnv,
    context: { 'myscript.sh': script },
    buildArgs: { my_arg: 'override' },
    expect: { files: { out: 'my_arg=override my_arg=override my_arg=ov' } },
  },
  {
    from: `${F} testEmptyStringArgInEnv`,
    title: 'an ARG with an empty default is in the RUN environment, one without a default is not',
    dockerfile:
      'FROM busybox AS build\nARG FOO\nARG BAR=\nRUN env > env.txt\nFROM scratch\nCOPY --from=build env.txt .\n',
    expect: {
      files: { 'env.txt': { content: /^BAR=$/m } },
      check: (t, { root }) => {
        t.notRegex(readFileSync(`${root}/env.txt`, 'utf8'), /^FOO=/m);
      },
    },
  },
  {
    from: `${F} testEnvEmptyFormatting`,
    title: 'an ENV value with %s is kept verbatim',
    dockerfile: 'FROM busybox AS build\nENV myenv foo%sbar\nRUN [ "$myenv" = \'foo%sbar\' ]\n',
    expect: {
      config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'myenv=foo%sbar'] },
    },
  },
];

declareCases(cases);
