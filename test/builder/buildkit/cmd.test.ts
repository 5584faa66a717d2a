// BuildKit's dockerfile_cmd_test.go, dockerfile_workdir_test.go, dockerfile_multistage_test.go and
// dockerfile_targets_test.go, replayed offline (see harness.ts and README.md).
import { declareCases, type BkCase } from './harness.js';

const C = 'dockerfile_cmd_test.go';
const W = 'dockerfile_workdir_test.go';
const M = 'dockerfile_multistage_test.go';

const stages =
  'FROM busybox AS STAge0\nCOPY foo bar\nFROM busybox AS staGE1\nCOPY --from=staGE0 bar baz\nFROM busybox\nCOPY --from=stage1 baz bax\n';

export const cases: BkCase[] = [
  {
    from: `${C} testCmdShell`,
    title: 'SHELL then a shell-form ENTRYPOINT uses the new shell, and an inherited CMD is cleared',
    dockerfile: 'FROM busybox AS base\nCMD ["test"]\nFROM base\nSHELL ["ls"]\nENTRYPOINT my entrypoint\n',
    expect: { config: { Cmd: 'absent', Entrypoint: ['ls', 'my entrypoint'] } },
  },
  {
    from: `${C} testCmdShell`,
    title: 'a stage based on an image with CMD keeps it until ENTRYPOINT is set',
    dockerfile: 'FROM busybox AS base\nCMD ["test"]\nFROM base\nLABEL x=y\n',
    expect: { config: { Cmd: ['test'] } },
  },
  {
    from: `${C} testDefaultShellAndPath`,
    title: 'a shell-form ENTRYPOINT on scratch runs under /bin/sh -c and the default PATH is set',
    dockerfile: 'FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n',
    expect: {
      config: {
        Entrypoint: ['/bin/sh', '-c', 'foo bar'],
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      },
    },
  },
  {
    from: `${C} testIgnoreEntrypoint`,
    title: 'RUN ignores the image ENTRYPOINT',
    dockerfile: 'FROM busybox\nENTRYPOINT ["/nosuchcmd"]\nRUN ["ls"]\n',
    expect: { config: { Entrypoint: ['/nosuchcmd'] } },
  },
  {
    from: `${C} testInvalidJSONCommands`,
    title: 'RUN with a JSON array followed by text runs the whole line through the shell',
    dockerfile: 'FROM busybox\nRUN ["echo", "hello"]this is invalid\n',
    expect: { error: 'this is invalid' },
  },
  {
    from: `${C} testInvalidJSONCommands`,
    title: 'ENTRYPOINT with a JSON array followed by text is shell form',
    dockerfile: 'FROM busybox\nENTRYPOINT []random string\n',
    expect: { config: { Entrypoint: ['/bin/sh', '-c', '[]random string'] } },
  },
  {
    from: `${C} testDockerfileInvalidCommand`,
    title: 'a RUN whose command does not exist fails with the command and exit code 127',
    dockerfile: 'FROM busybox\nRUN invalidcmd\n',
    expect: { error: /process "\/bin\/sh -c invalidcmd" did not complete successfully: exit code: 127/ },
  },
  {
    from: `${C} testDockerfileInvalidInstruction`,
    title: 'an unknown instruction fails with did you mean',
    dockerfile: 'FROM scratch\nFNTRYPOINT ["/bin/sh", "-c", "echo invalidinstruction"]\n',
    expect: { error: /unknown instruction: FNTRYPOINT \(did you mean ENTRYPOINT\?\)/ },
  },
  {
    from: `${W} testWorkdirCreatesDir`,
    title: 'WORKDIR creates the directory even when nothing else uses it',
    dockerfile: 'FROM scratch\nWORKDIR /foo\nWORKDIR /\n',
    expect: { files: { foo: { type: 'dir', mode: '0755' } }, config: { WorkingDir: '/' } },
  },
  {
    from: `${W} testWorkdirUser`,
    title: 'WORKDIR after USER creates the directory owned by that user',
    dockerfile: 'FROM busybox\nUSER user\nWORKDIR /mydir\nRUN [ "$(stat -c "%U %G" /mydir)" == "user user" ]\n',
    expect: { files: { mydir: { uid: 1000, gid: 1000 } } },
  },
  {
    from: `${W} testWorkdirCopyIgnoreRelative`,
    title: 'COPY --from takes source paths from the root of the stage, not its WORKDIR',
    dockerfile: 'FROM busybox AS base\nWORKDIR /foo\nCOPY Dockerfile /\nFROM busybox\nCOPY --from=base Dockerfile .\n',
    expect: { files: { Dockerfile: { type: 'file' } } },
  },
  {
    from: `${W} testWorkdirExists`,
    title: 'WORKDIR on an existing directory keeps its owner',
    dockerfile:
      'FROM busybox\nRUN mkdir /mydir && chown user:user /mydir\nWORKDIR /mydir\nRUN [ "$(stat -c "%U %G" /mydir)" == "user user" ]\n',
    expect: { files: { mydir: { uid: 1000, gid: 1000 } } },
  },
  {
    from: `${W} testWorkdirSourceDateEpochReproducible`,
    title: 'two builds of WORKDIR with SOURCE_DATE_EPOCH give the same image',
    dockerfile: 'FROM busybox\nWORKDIR /mydir\n',
    sourceDateEpoch: 1_234_567_890,
    expect: {
      image: { created: '2009-02-13T23:31:30Z' },
      check: (t, { image }) => t.is(image.config.history?.at(-1)?.created, '2009-02-13T23:31:30Z'),
    },
  },
  {
    from: `${M} testMultiStageImplicitFrom`,
    title: 'COPY --from an image name that is not a stage uses that image',
    dockerfile: 'FROM scratch\nCOPY --from=busybox /etc/passwd test\n',
    expect: { files: { test: { content: /root/ } } },
  },
  {
    from: `${M} testMultiStageImplicitFrom`,
    title: 'COPY --from a stage name takes the stage, not an image of the same name',
    dockerfile:
      'FROM busybox AS golang\nRUN mkdir -p /usr/bin && echo -n foo > /usr/bin/go\nFROM scratch\nCOPY --from=golang /usr/bin/go go\n',
    expect: { files: { go: 'foo' } },
  },
  {
    from: `${M} testMultiStageCaseInsensitive`,
    title: 'stage names in --from and --target are case-insensitive',
    dockerfile: stages,
    context: { foo: 'foo-contents' },
    target: 'Stage1',
    expect: { files: { baz: 'foo-contents' } },
  },
  {
    from: `${M} testOutOfOrderStage`,
    title: 'COPY --from a stage defined later is an error',
    dockerfile:
      'FROM busybox AS target\nCOPY --from=build /Dockerfile /out\n\nFROM busybox AS build\nCOPY /Dockerfile /d2\n\nFROM target\n',
    expect: { error: /cannot copy from stage "build", it needs to be defined before current stage "target"/ },
  },
  {
    from: `${M} testOutOfOrderStage`,
    title: 'COPY --from a later stage by index is an error too',
    dockerfile:
      'FROM busybox AS target\nCOPY --from=1 /Dockerfile /out\n\nFROM busybox AS build\nCOPY /Dockerfile /d2\n\nFROM target\n',
    expect: { error: /cannot copy from stage "1", it needs to be defined before current stage "target"/ },
  },
  {
    from: `${M} testEmptyStages`,
    title: 'a Dockerfile with only ARG fails: no stages',
    dockerfile: 'ARG foo=bar\n',
    expect: { error: 'dockerfile contains no stages to build' },
  },
  {
    from: 'dockerfile_targets_test.go testTargetsList',
    title: 'the last stage is built by default, and a stage whose base is another named stage builds from it',
    dockerfile:
      '# build defines stage for compiling the binary\nFROM busybox AS build\nRUN true\n\nFROM busybox as second\nRUN echo -n second > /second\n\nFROM busybox\nRUN false\n\n# binary returns the compiled binary\nFROM second AS binary\n',
    expect: { files: { second: 'second' } },
  },
];

declareCases(cases);
