// Error cases from BuildKit's Dockerfile tests (errors_test.go, dockerfile_mount_test.go, dockerfile_secrets_test.go,
// dockerfile_source_date_epoch_test.go, dockerfile_heredoc_test.go, parser and lexer tests) whose wording BuildKit
// keeps stable: each must fail with that text after the `Dockerfile:N` prefix (see harness.ts and README.md).
import { declareCases, type BkCase } from './harness.js';

const err = (
  from: string,
  title: string,
  dockerfile: string,
  error: string | RegExp,
  extra: Partial<BkCase> = {},
): BkCase => ({
  from,
  title,
  dockerfile,
  expect: { error },
  ...extra,
});

export const cases: BkCase[] = [
  err(
    'errors_test.go testErrorsSourceMap',
    'an unknown instruction names its line',
    'FROM busybox\nENV foo bar\nRUNX echo\n',
    /Dockerfile:3: unknown instruction: RUNX/,
  ),
  err(
    'dockerfile_mount_test.go testMountInvalid',
    'an unknown RUN flag: unknown flag with did you mean',
    'FROM busybox\nRUN --mont=target=/mytmp,type=tmpfs true\n',
    /unknown flag: --mont \(did you mean mount\?\)/,
  ),
  err(
    'dockerfile_mount_test.go testMountInvalid',
    'an unknown mount type suggests the right one',
    'FROM busybox\nRUN --mount=target=/mytmp,type=tmpfss true\n',
    /did you mean tmpfs\?/,
  ),
  err(
    'dockerfile_mount_test.go testMountInvalid',
    'an unknown mount option suggests the right one',
    'FROM busybox\nRUN --mount=typ=tmpfs,target=/mytmp true\n',
    /did you mean type\?/,
  ),
  err(
    'dockerfile_mount_test.go (issue 12)',
    '--mount=from=$undefined is an error',
    'FROM busybox\nRUN --mount=from=$undefined,target=/x true\n',
    "'from' doesn't support variable expansion, define alias stage instead",
  ),
  err(
    'shell/lex_test.go TestShellParser4EnvVars (issue 12)',
    '${FOO:#} is an error',
    'FROM busybox\nENV FOO=bar\nENV X=${FOO:#}\n',
    /FOO/,
  ),
  err(
    'dockerfile_secrets_test.go testSecretRequired',
    'a required secret that was not given fails: secret not found',
    'FROM busybox\nRUN --mount=type=secret,id=mysecret,required true\n',
    /secret mysecret: not found/,
  ),
  err(
    'dockerfile_source_date_epoch_test.go (epoch.go)',
    "an invalid SOURCE_DATE_EPOCH build arg fails with BuildKit's message",
    'FROM busybox\nRUN true\n',
    'invalid SOURCE_DATE_EPOCH: notanumber',
    { buildArgs: { SOURCE_DATE_EPOCH: 'notanumber' } },
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    "COPY without a destination: BuildKit's message",
    'FROM busybox\nCOPY foo\n',
    'COPY requires at least two arguments, but only one was provided. Destination could not be determined',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    "ADD without a destination: BuildKit's message",
    'FROM busybox\nADD foo\n',
    'ADD requires at least two arguments, but only one was provided. Destination could not be determined',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'FROM with two arguments is refused',
    'FROM busybox AS\n',
    'FROM requires either one or three arguments',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'a stage name starting with a digit is refused',
    'FROM busybox AS 1st\n',
    /invalid name for build stage: "1st"/,
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'ONBUILD ONBUILD is refused',
    'FROM busybox\nONBUILD ONBUILD RUN true\n',
    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'ONBUILD FROM is refused',
    'FROM busybox\nONBUILD FROM busybox\n',
    "FROM isn't allowed as an ONBUILD trigger",
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'HEALTHCHECK of an unknown type is refused',
    'FROM busybox\nHEALTHCHECK FOO true\n',
    'Unknown type "FOO" in HEALTHCHECK (try CMD)',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'HEALTHCHECK CMD without a command is refused',
    'FROM busybox\nHEALTHCHECK CMD\n',
    'Missing command after HEALTHCHECK CMD',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'HEALTHCHECK --retries below zero is refused',
    'FROM busybox\nHEALTHCHECK --retries=-1 CMD true\n',
    '--retries cannot be negative (-1)',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'an empty VOLUME is refused',
    'FROM busybox\nVOLUME [""]\n',
    'VOLUME specified can not be an empty string',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'ENV without a value is refused',
    'FROM busybox\nENV\n',
    'ENV requires at least one argument',
  ),
  err(
    'instructions/parse_test.go TestErrorCases',
    'a blank ENV name is refused',
    'FROM busybox\nENV =x\n',
    'ENV names can not be blank',
  ),
  err(
    'dockerfile2llb/convert.go (validations.go)',
    'a stage that copies from itself: circular dependency',
    'FROM busybox AS a\nCOPY --from=a /x /y\n',
    'circular dependency detected on stage: a',
  ),
  err(
    'dockerfile_multistage_test.go (convert.go)',
    'COPY --from an invalid stage index fails',
    'FROM busybox\nFROM busybox\nCOPY --from=-1 /x /y\n',
    /invalid stage index|not found|could not/,
  ),
  err('dockerfile2llb/convert.go', 'a blank base name fails', 'ARG X\nFROM $X\n', 'base name ($X) should not be blank'),
  err(
    'dockerfile_test.go testFrontendSyntaxDirective (issue 12)',
    '# syntax= naming an unknown frontend fails',
    '# syntax=foobar\nFROM busybox\n',
    /foobar/,
  ),
  err(
    'dockerfile_heredoc_test.go (issue 12)',
    'COPY of a heredoc as destination is refused',
    'FROM busybox\nCOPY foo <<EOF\nx\nEOF\n',
    'COPY cannot accept a heredoc as a destination',
  ),
  err(
    'dockerfile_cmd_test.go testDockerfileInvalidInstruction',
    'an unknown instruction suggests the nearest',
    'FROM busybox\nCPOY a b\n',
    /unknown instruction: CPOY \(did you mean COPY\?\)/,
  ),
  err(
    'dockerfile_core_test.go testTargetMistype',
    '--target naming nothing close gives no suggestion',
    'FROM busybox AS build\n',
    /target stage "zzzzzz" could not be found$/,
    { target: 'zzzzzz' },
  ),
];

declareCases(cases);
