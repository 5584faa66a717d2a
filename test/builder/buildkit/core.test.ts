// BuildKit's frontend/dockerfile/dockerfile_core_test.go, replayed offline (see harness.ts and README.md).
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_core_test.go';

export const cases: BkCase[] = [
  {
    from: `${F} testDockerfileDirs`,
    title: 'COPY to a file and to / both land, and RUN sees them in the working directory',
    dockerfile:
      'FROM busybox\nCOPY foo /foo2\nCOPY foo /\nRUN echo -n bar > foo3\nRUN test -f foo\nRUN cmp -s foo foo2\nRUN cmp -s foo foo3\n',
    context: { foo: 'bar' },
    expect: { files: { foo: 'bar', foo2: 'bar', foo3: 'bar' } },
  },
  {
    from: `${F} testSymlinkedDockerfile`,
    title: 'a Dockerfile that is a symlink to another file of the context is followed',
    dockerfile: 'FROM busybox\nENV foo bar\n',
    dockerfileName: 'Dockerfile.web',
    context: { Dockerfile: { link: 'Dockerfile.web' } },
    expect: { config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'foo=bar'] } },
  },
  {
    from: `${F} testContextChangeDirToFile`,
    title: 'a context path that was a directory in an earlier build and is now a file is copied as the file',
    dockerfile: 'FROM busybox\nCOPY foo /\n',
    context: { foo: 'contents2' },
    expect: { files: { foo: 'contents2' } },
  },
  {
    from: `${F} testExposeExpansion`,
    title: 'EXPOSE expands an ARG into several ports, tcp by default, sorted in the config',
    dockerfile: 'FROM busybox\nARG PORTS="3000 4000/udp"\nEXPOSE $PORTS\nEXPOSE 5000\n',
    expect: {
      config: { ExposedPorts: { '3000/tcp': {}, '4000/udp': {}, '5000/tcp': {} } },
      check: (t, { image }) =>
        t.deepEqual(Object.keys(image.config.config?.ExposedPorts ?? {}), ['3000/tcp', '4000/udp', '5000/tcp']),
    },
  },
  {
    from: `${F} testExposeExpansion`,
    title: 'EXPOSE ports given out of order are sorted in the config',
    dockerfile: 'FROM busybox\nEXPOSE 8080 80/udp\nEXPOSE 443 22\n',
    expect: {
      check: (t, { image }) =>
        t.deepEqual(Object.keys(image.config.config?.ExposedPorts ?? {}), ['22/tcp', '443/tcp', '80/udp', '8080/tcp']),
    },
  },
  {
    from: `${F} testDockerfileLowercase`,
    title: 'without -f, a file named dockerfile is used when Dockerfile is absent',
    dockerfile: 'FROM busybox\nLABEL found=lowercase\n',
    dockerfileName: 'dockerfile',
    expect: { config: { Labels: { found: 'lowercase' } } },
  },
  {
    from: `${F} testLabels`,
    title: 'LABEL and the --label build option both end up in the config labels',
    dockerfile: 'FROM busybox\nLABEL foo=bar\n',
    labels: { bar: 'baz' },
    expect: { config: { Labels: { foo: 'bar', bar: 'baz' } } },
  },
  {
    from: `${F} testUser`,
    title: 'RUN runs as root by default, with root as the primary group',
    dockerfile:
      'FROM busybox\nRUN mkdir -m 0777 /out\nRUN id -un > /out/rootuser\nRUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)" = \'0:0/root:root\' ]\n',
    expect: { files: { 'out/rootuser': 'root\n' } },
  },
  {
    from: `${F} testUser`,
    title: 'USER by name, by id and as user:group switches uid, gid and supplementary groups as /etc/group says',
    dockerfile: `FROM busybox
RUN echo 'dockerio:x:1001:1001::/bin:/bin/false' >> /etc/passwd && echo 'dockerio:x:1001:' >> /etc/group
USER dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER root
RUN echo 'supplementary:x:1002:dockerio' >> /etc/group
USER dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]
USER 1001
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001 1002:dockerio supplementary' ]
USER dockerio:dockerio
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1001/dockerio:dockerio/1001:dockerio' ]
USER 1001:dockerio
RUN [ "$(id -u):$(id -g)" = '1001:1001' ]
USER dockerio:supplementary
RUN [ "$(id -u):$(id -g)/$(id -un):$(id -gn)/$(id -G):$(id -Gn)" = '1001:1002/dockerio:supplementary/1002:supplementary' ]
USER 1001:1002
RUN [ "$(id -u):$(id -g)/$(id -G)" = '1001:1002/1002' ]
USER 1042:1043
RUN [ "$(id -u):$(id -g)/$(id -G)" = '1042:1043/1043' ]
USER nobody
`,
    expect: { config: { User: 'nobody' } },
  },
  {
    from: `${F} testUser`,
    title: 'a user named in USER that a later stage copies from keeps its output, and the final USER is in the config',
    dockerfile:
      'FROM busybox AS base\nRUN mkdir -m 0777 /out\nUSER user\nRUN id -un > /out/useruser\nFROM busybox\nCOPY --from=base /out /\nUSER nobody\n',
    expect: { files: { useruser: 'user\n' }, config: { User: 'nobody' } },
  },
  {
    from: `${F} testUserAdditionalGids`,
    title: 'USER uid alone keeps the primary gid 0 in the group list (CVE-2023-25173)',
    dockerfile:
      'FROM busybox\nSHELL ["/bin/sh", "-euxc"]\nUSER 1234\nRUN [ "$(id -u):$(id -g):$(id -G)" = "1234:0:0" ]\nUSER 1234:12\nRUN [ "$(id -u):$(id -g):$(id -G)" = "1234:12:12" ]\n',
    expect: {},
  },
  {
    from: `${F} testTargetMistype`,
    title: 'a mistyped --target fails with did you mean',
    dockerfile: 'FROM busybox AS build\nCOPY Dockerfile /out\n\nFROM busybox\nCOPY --from=build /out /\n',
    target: 'bulid',
    expect: { error: 'target stage "bulid" could not be found (did you mean build?)' },
  },
  {
    from: `${F} testStepNames`,
    title: 'COPY --from a stage with --chmod gives the files that mode',
    dockerfile:
      'FROM busybox AS base\nWORKDIR /out\nRUN echo "base" > base\nFROM busybox\nCOPY --from=base --chmod=0644 /out /out\n',
    expect: { files: { 'out/base': { content: 'base\n', mode: '0644' } } },
  },
  {
    from: `${F} testDockerfileCheckHostname`,
    title: 'RUN sees the hostname buildkitsandbox, or the BUILDKIT_SANDBOX_HOSTNAME build arg, also in /etc/hosts',
    dockerfile:
      'FROM busybox AS a\nRUN hostname > /h && grep -c "$(hostname)" /etc/hosts > /n\nFROM scratch\nCOPY --from=a /h /n /\n',
    buildArgs: { BUILDKIT_SANDBOX_HOSTNAME: 'foo' },
    expect: { files: { h: { content: 'foo\n' }, n: { content: '1\n' } } },
  },
  {
    from: `${F} testDockerfileCheckHostname`,
    title: 'without the build arg, RUN sees the hostname buildkitsandbox',
    dockerfile: 'FROM busybox AS a\nRUN hostname > /h\nFROM scratch\nCOPY --from=a /h /\n',
    expect: { files: { h: { content: 'buildkitsandbox\n' } } },
  },
  {
    from: 'exporter/containerimage/writer.go (issue 12: a RUN that changes nothing still adds a layer)',
    title: 'a RUN that changes nothing adds an empty layer, and its history entry is not an empty_layer one',
    dockerfile: 'FROM busybox\nRUN true\nENV A=1\n',
    expect: {
      history: [{ createdBy: /^RUN \/bin\/sh -c true/ }, { createdBy: 'ENV A=1', emptyLayer: true }],
      newLayers: 1,
    },
  },
];

declareCases(cases);
