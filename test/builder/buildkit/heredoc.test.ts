// BuildKit's frontend/dockerfile/dockerfile_heredoc_test.go, replayed offline (see harness.ts and README.md).
// Each BuildKit test builds a `build` stage and exports `/dest` (or the stage's WORKDIR) from a scratch stage; the
// same Dockerfiles are built here and the files read from the image.
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_heredoc_test.go';

export const cases: BkCase[] = [
  {
    from: `${F} testCopyHeredoc`,
    title:
      'COPY of heredocs writes one file, two into a directory, with --chmod and --chown (the user is added by hand: busybox:test has no adduser)',
    dockerfile: `FROM busybox AS build
RUN echo "user:x:1000:1000::/home/user:/bin/sh" >> /etc/passwd && echo "user:x:1000:" >> /etc/group
WORKDIR /dest
COPY <<EOF single
single file
EOF
COPY <<EOF <<EOF2 double/
first file
EOF
second file
EOF2
RUN mkdir -p /permfiles
COPY --chmod=777 <<EOF /permfiles/all
dummy content
EOF
COPY --chmod=0644 <<EOF /permfiles/rw
dummy content
EOF
COPY --chown=user:user <<EOF /permfiles/owned
dummy content
EOF
RUN stat -c "%04a" /permfiles/all >> perms && \\
	stat -c "%04a" /permfiles/rw >> perms && \\
	stat -c "%U:%G" /permfiles/owned >> perms
FROM scratch
COPY --from=build /dest /
`,
    expect: {
      files: {
        single: 'single file\n',
        'double/EOF': 'first file\n',
        'double/EOF2': 'second file\n',
        perms: '0777\n0644\nuser:user\n',
      },
    },
  },
  {
    from: `${F} testCopyHeredocSpecialSymbols`,
    title: 'COPY of heredocs: quotes kept, backslashes read unless the delimiter is quoted',
    dockerfile: `FROM scratch
COPY <<EOF quotefile
"quotes in file"
EOF
COPY <<EOF slashfile1
\\
EOF
COPY <<EOF slashfile2
\\\\
EOF
COPY <<EOF slashfile3
\\$
EOF
COPY <<"EOF" rawslashfile1
\\
EOF
COPY <<"EOF" rawslashfile2
\\\\
EOF
COPY <<"EOF" rawslashfile3
\\$
EOF
`,
    expect: {
      files: {
        quotefile: '"quotes in file"\n',
        slashfile1: '\n',
        slashfile2: '\\\n',
        slashfile3: '$\n',
        rawslashfile1: '\\\n',
        rawslashfile2: '\\\\\n',
        rawslashfile3: '\\$\n',
      },
    },
  },
  {
    from: `${F} testRunBasicHeredoc`,
    title: 'RUN of a heredoc runs its lines in the shell',
    dockerfile: `FROM busybox AS build
RUN <<EOF
echo "i am" >> /dest
whoami >> /dest
EOF
FROM scratch
COPY --from=build /dest /dest
`,
    expect: { files: { dest: 'i am\nroot\n' } },
  },
  {
    from: `${F} testRunFakeHeredoc`,
    title: 'RUN of a heredoc runs it with the SHELL the Dockerfile sets',
    dockerfile: `FROM busybox AS build
SHELL ["/bin/awk"]
RUN <<EOF
BEGIN {
	print "foo" > "/dest"
}
EOF
FROM scratch
COPY --from=build /dest /dest
`,
    expect: { files: { dest: 'foo\n' } },
  },
  {
    from: `${F} testRunShebangHeredoc`,
    title: 'RUN of a heredoc with a #! line runs that interpreter, also with <<- and tab-indented lines',
    dockerfile: `FROM busybox AS build
WORKDIR /dest
RUN <<EOF
#!/bin/awk -f
BEGIN {
	print "hello" >> "./out1"
	print "world" >> "./out1"
}
EOF
RUN <<-EOF
	#!/bin/awk -f
	BEGIN {
		print "hello" >> "./out2"
		print "world" >> "./out2"
	}
EOF
FROM scratch
COPY --from=build /dest /
`,
    expect: { files: { out1: 'hello\nworld\n', out2: 'hello\nworld\n' } },
  },
  {
    from: `${F} testRunComplexHeredoc`,
    title: 'RUN with heredocs piped to commands and on file descriptors 3 and 4',
    dockerfile: `FROM busybox AS build
WORKDIR /dest
RUN cat <<EOF1 | tr '[:upper:]' '[:lower:]' > ./out1; \\
	cat <<EOF2 | tr '[:lower:]' '[:upper:]' > ./out2
hello WORLD
EOF1
HELLO world
EOF2
RUN <<EOF 3<<IN1 4<<IN2 awk -f -
BEGIN {
	while ((getline line < "/proc/self/fd/3") > 0)
		print tolower(line) > "./fd3"
	while ((getline line < "/proc/self/fd/4") > 0)
		print toupper(line) > "./fd4"
}
EOF
hello WORLD
IN1
HELLO world
IN2
FROM scratch
COPY --from=build /dest /
`,
    expect: {
      files: { out1: 'hello world\n', out2: 'HELLO WORLD\n', fd3: 'hello world\n', fd4: 'HELLO WORLD\n' },
    },
  },
  {
    from: `${F} testHeredocIndent`,
    title: '<<EOF keeps leading tabs and <<-EOF removes them, in COPY and RUN',
    dockerfile: `FROM busybox AS build
COPY <<EOF /dest/foo-copy
	foo
EOF
COPY <<-EOF /dest/bar-copy
	bar
EOF
RUN <<EOF
echo "
	foo" > /dest/foo-run
EOF
RUN <<-EOF
echo "
	bar" > /dest/bar-run
EOF
RUN <<EOF
#!/bin/sh
echo "
	foo" > /dest/foo2-run
EOF
RUN <<-EOF
#!/bin/sh
echo "
	bar" > /dest/bar2-run
EOF
RUN <<EOF sh > /dest/foo3-run
echo "
	foo"
EOF
RUN <<-EOF sh > /dest/bar3-run
echo "
	bar"
EOF
FROM scratch
COPY --from=build /dest /
`,
    expect: {
      files: {
        'foo-copy': '\tfoo\n',
        'foo-run': '\n\tfoo\n',
        'foo2-run': '\n\tfoo\n',
        'foo3-run': '\n\tfoo\n',
        'bar-copy': 'bar\n',
        'bar-run': '\nbar\n',
        'bar2-run': '\nbar\n',
        'bar3-run': '\nbar\n',
      },
    },
  },
  {
    from: `${F} testHeredocVarSubstitution`,
    title: 'an unquoted heredoc delimiter expands ARGs, a quoted one keeps them; RUN heredocs see shell variables',
    dockerfile: `FROM busybox as build
ARG name=world
COPY <<EOF /dest/c1
Hello \${name}!
EOF
COPY <<'EOF' /dest/c2
Hello \${name}!
EOF
COPY <<"EOF" /dest/c3
Hello \${name}!
EOF
COPY <<EOF /dest/q1
Hello '\${name}'!
EOF
COPY <<EOF /dest/q2
Hello "\${name}"!
EOF
COPY <<'EOF' /dest/qsingle1
Hello '\${name}'!
EOF
COPY <<'EOF' /dest/qsingle2
Hello "\${name}"!
EOF
COPY <<"EOF" /dest/qdouble1
Hello '\${name}'!
EOF
COPY <<"EOF" /dest/qdouble2
Hello "\${name}"!
EOF
RUN <<EOF
greeting="Hello"
echo "\${greeting} \${name}!" > /dest/r1
EOF
RUN <<EOF
name="new world"
echo "Hello \${name}!" > /dest/r2
EOF
FROM scratch
COPY --from=build /dest /
`,
    expect: {
      files: {
        c1: 'Hello world!\n',
        c2: 'Hello ${name}!\n',
        c3: 'Hello ${name}!\n',
        q1: "Hello 'world'!\n",
        q2: 'Hello "world"!\n',
        qsingle1: "Hello '${name}'!\n",
        qsingle2: 'Hello "${name}"!\n',
        qdouble1: "Hello '${name}'!\n",
        qdouble2: 'Hello "${name}"!\n',
        r1: 'Hello world!\n',
        r2: 'Hello new world!\n',
      },
    },
  },
  {
    from: `${F} testOnBuildHeredoc`,
    title: 'an ONBUILD RUN with a heredoc runs in the image built FROM it (the store stands in for the registry)',
    before: [
      {
        tag: 'bk-onbuild-heredoc:base',
        dockerfile: 'FROM busybox\nONBUILD RUN <<EOF\necho "hello world" >> /dest\nEOF\n',
      },
    ],
    dockerfile: 'FROM bk-onbuild-heredoc:base AS base\nFROM scratch\nCOPY --from=base /dest /dest\n',
    expect: { files: { dest: 'hello world\n' } },
  },
];

declareCases(cases);
