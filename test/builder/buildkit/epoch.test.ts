// BuildKit's frontend/dockerfile/dockerfile_source_date_epoch_test.go, replayed offline (see harness.ts and
// README.md). BuildKit's tests read the OCI exporter's output (image created time, history times, the layer's
// rewritten-timestamp annotation); here the same times are read from the stored image and the copied files.
// Left out: git and HTTP contexts (testSourceDateEpochContextGit, ContextHTTP*), named contexts (NamedContext*),
// a stage's remote ADD as the time source (StageHTTPArchive: refused with a clear error), the exporter's own
// source-date-epoch attribute (DockerfileDefaultReset), and testReproSourceDateEpoch (BuildKit's digests of a
// debian image pushed to a registry).
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_source_date_epoch_test.go';

const iso = (s: number): string => new Date(s * 1000).toISOString().replace('.000Z', 'Z');

/** the image and every history entry it adds were created at `s`, and /Dockerfile has that mtime */
const createdAt = (s: number): BkCase['expect'] => ({
  check: (t, { image, root }) => {
    t.is(image.config.created, iso(s));
    for (const h of image.config.history ?? []) t.is(h.created, iso(s), `history ${h.created_by}`);
    if (root) t.is(statSync(join(root, 'Dockerfile')).mtimeMs / 1000, s, 'the copied file has the epoch as mtime');
  },
  files: { Dockerfile: { type: 'file' } },
});

export const cases: BkCase[] = [
  {
    from: `${F} testSourceDateEpochWithoutExporter`,
    title: 'SOURCE_DATE_EPOCH from the build arg sets the created time of the image and of every history entry',
    dockerfile: 'FROM scratch\nENTRYPOINT foo bar\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000001' },
    expect: createdAt(1_700_000_001),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefault`,
    title: 'a global ARG SOURCE_DATE_EPOCH default is the epoch of the build',
    dockerfile: `ARG SOURCE_DATE_EPOCH=${Date.UTC(2015, 9, 21, 7, 28) / 1000}\nFROM scratch\nCOPY Dockerfile .\n`,
    expect: createdAt(Date.UTC(2015, 9, 21, 7, 28) / 1000),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefaultOverride`,
    title: 'a SOURCE_DATE_EPOCH build arg wins over the Dockerfile default',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=1700000001\nFROM scratch\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000002' },
    expect: createdAt(1_700_000_002),
  },
  {
    from: `${F} testSourceDateEpochDockerfileDefaultInvalid`,
    title: 'an invalid SOURCE_DATE_EPOCH default fails: invalid SOURCE_DATE_EPOCH',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=not-a-timestamp\nFROM scratch\nCOPY Dockerfile .\n',
    expect: { error: 'invalid SOURCE_DATE_EPOCH: not-a-timestamp' },
  },
  {
    from: `${F} testSourceDateEpochContextLocalUnset`,
    title: 'SOURCE_DATE_EPOCH=context with a local context leaves the epoch unset',
    dockerfile: 'FROM scratch\nCOPY Dockerfile /\n',
    buildArgs: { SOURCE_DATE_EPOCH: 'context' },
    expect: {
      check: (t, { image, root }) => {
        t.not(image.config.created, '1970-01-01T00:00:00Z');
        t.is(statSync(join(root!, 'Dockerfile')).mtimeMs, 1_600_000_000_000, 'the file keeps its own mtime');
      },
      files: { Dockerfile: { type: 'file' } },
    },
  },
  {
    from: `${F} testSourceDateEpochStageOverride`,
    title: 'a SOURCE_DATE_EPOCH build arg wins over a Dockerfile default naming a source stage',
    dockerfile:
      'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD http://127.0.0.1:9/src.tar /\nFROM scratch\nCOPY Dockerfile .\n',
    buildArgs: { SOURCE_DATE_EPOCH: '1700000502' },
    expect: createdAt(1_700_000_502),
  },
  {
    from: `${F} testSourceDateEpochStageInvalid`,
    title: 'a SOURCE_DATE_EPOCH stage with a COPY fails: does not meet source-only requirements',
    dockerfile: 'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nCOPY Dockerfile /Dockerfile\nFROM scratch\n',
    expect: { error: 'SOURCE_DATE_EPOCH stage does not meet source-only requirements' },
  },
  {
    from: `${F} testSourceDateEpochStageHTTPArchive (the part that is refused)`,
    title: 'a SOURCE_DATE_EPOCH stage with a remote ADD is refused with a clear error',
    dockerfile:
      'ARG SOURCE_DATE_EPOCH=mysource\nFROM scratch AS mysource\nADD http://127.0.0.1:9/src.tar /\nFROM busybox\n',
    expect: { error: /SOURCE_DATE_EPOCH from stage mysource .* is not supported/ },
  },
];

declareCases(cases);
