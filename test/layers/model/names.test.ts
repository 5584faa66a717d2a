import test from 'ava';
import { familiarName, fullName, parseReference } from '../../../layers/model/names.js';

const normalizes = test.macro({
  exec(t, input: string, full: string, familiar: string) {
    const ref = parseReference(input);
    t.is(fullName(ref), full);
    t.is(familiarName(ref), familiar);
  },
  title: (_p, input: string, full: string) => `${input} normalizes to ${full}`,
});

test(normalizes, 'debian', 'docker.io/library/debian:latest', 'debian:latest');
test(normalizes, 'debian:bookworm', 'docker.io/library/debian:bookworm', 'debian:bookworm');
test(normalizes, 'app:0.1', 'docker.io/library/app:0.1', 'app:0.1');
test(normalizes, 'user/app', 'docker.io/user/app:latest', 'user/app:latest');
test(normalizes, 'docker.io/library/debian:12', 'docker.io/library/debian:12', 'debian:12');
test(normalizes, 'index.docker.io/library/debian', 'docker.io/library/debian:latest', 'debian:latest');
test(normalizes, 'localhost:5000/app:0.1', 'localhost:5000/app:0.1', 'localhost:5000/app:0.1');
test(normalizes, '127.0.0.1:5000/team/app', '127.0.0.1:5000/team/app:latest', '127.0.0.1:5000/team/app:latest');
test(normalizes, 'ghcr.io/org/tool:v1.2.3', 'ghcr.io/org/tool:v1.2.3', 'ghcr.io/org/tool:v1.2.3');
test(
  normalizes,
  `debian@sha256:${'a'.repeat(64)}`,
  `docker.io/library/debian@sha256:${'a'.repeat(64)}`,
  `debian@sha256:${'a'.repeat(64)}`,
);

const rejects = test.macro({
  exec(t, input: string) {
    const err = t.throws(() => parseReference(input));
    t.regex(err?.message ?? '', /invalid image name|not a valid digest|unsupported digest/);
  },
  title: (_p, input: string) => `${JSON.stringify(input)} is not an image name`,
});
test(rejects, '');
test(rejects, 'UPPER');
test(rejects, 'app:');
test(rejects, 'app:-bad');
test(rejects, '../etc/passwd');
test(rejects, 'a//b');
test(rejects, 'app@sha256:xyz');
test(rejects, 'app@md5:abcdef');
