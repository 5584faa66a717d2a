// BuildKit's frontend/dockerfile/dockerfile_secrets_test.go, replayed offline (see harness.ts and README.md).
// Secrets are given as build() does from `--secret id=mysecret,…` (BuildKit's tests: secretsprovider.FromMap).
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_secrets_test.go';
const secrets = { mysecret: 'pw' };

export const cases: BkCase[] = [
  {
    from: `${F} testSecretFileParams`,
    title: 'a secret file gets the mode, uid and gid asked for and leaves no stub behind',
    dockerfile: `FROM busybox
RUN --mount=type=secret,required=false,mode=741,uid=100,gid=102,target=/mysecret [ "$(stat -c "%u %g %f" /mysecret)" = "100 102 81e1" ]
RUN [ ! -f /mysecret ] # check no stub left behind
`,
    secrets,
    expect: { files: { mysecret: 'absent' } },
  },
  {
    from: `${F} testSecretRequiredWithoutValue`,
    title: 'a required secret that was not given fails: secret mysecret: not found',
    dockerfile: 'FROM busybox \n\t\tRUN --mount=type=secret,required,id=mysecret foo',
    expect: { error: 'secret mysecret: not found' },
  },
  {
    from: `${F} testSecretAsEnviron`,
    title: 'a secret as an environment variable: set, no file, and masked in the step name',
    dockerfile: `FROM busybox
ENV SECRET_ENV=foo
RUN --mount=type=secret,id=mysecret,env=SECRET_ENV [ "$SECRET_ENV" == "pw" ] && [ ! -f /run/secrets/mysecret ] || false
`,
    secrets,
    expect: { step: /^(?=.*\/run\/secrets\/mysecret).*\[ "\*\*\*\*" == "pw" \] && / },
  },
  {
    from: `${F} testSecretAsEnvironWithFileMount`,
    title: 'a secret with env= and target= is both a variable and a file',
    dockerfile: `FROM busybox
RUN --mount=type=secret,id=mysecret,target=/run/secrets/secret,env=SECRET_ENV [ "$SECRET_ENV" == "pw" ] && [ -f /run/secrets/secret ] || false
`,
    secrets,
    expect: { files: { 'run/secrets/secret': 'absent' } },
  },
];

declareCases(cases);
