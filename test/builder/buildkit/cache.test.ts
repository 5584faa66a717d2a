// BuildKit's frontend/dockerfile/dockerfile_cache_test.go, replayed offline (see harness.ts and README.md): the
// same Dockerfile and context built again, served from the cache, is the same image (testReproducibleIDs), also
// when the Dockerfile ends with an instruction that adds no layer (the image's created time is then the last
// history entry's, as BuildKit's exporter sets it, not the time of the rebuild).
// The other tests of that file need BuildKit's cache exporters, registries or its build-history API, and are
// covered by test/builder/cache*.test.ts where tsbuild has the feature.
import { getImage } from '../../../layers/store/image.js';
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_cache_test.go';

const context = { foo: { content: 'foo-contents', mode: 0o600 } };

const sameImageAs =
  (tag: string): NonNullable<BkCase['expect']['check']> =>
  async (t, { result, store, image }) => {
    const first = await getImage(store, tag);
    t.is(result.digest, first.descriptor.digest, 'the rebuild is the same manifest');
    t.is(image.config.created, image.config.history?.at(-1)?.created, 'created is the last history entry');
  };

const reproducible = 'FROM busybox\nENV foo=bar\nCOPY foo /\nRUN echo bar > bar\n';
const trailingCmd = `${reproducible}CMD ["/bin/sh"]\nLABEL done=yes\n`;

export const cases: BkCase[] = [
  {
    from: `${F} testReproducibleIDs`,
    title: 'the same Dockerfile and context built again under another name is the same image',
    dockerfile: reproducible,
    context,
    before: [{ tag: 'example.com/moby/dockerfileids:test', dockerfile: reproducible, context }],
    expect: { newLayers: 2, check: sameImageAs('example.com/moby/dockerfileids:test') },
  },
  {
    from: `${F} testReproducibleIDs`,
    title: 'a rebuild is the same image also when the last instructions add no layer (CMD, LABEL)',
    dockerfile: trailingCmd,
    context,
    before: [{ tag: 'example.com/moby/dockerfileids:cmd', dockerfile: trailingCmd, context }],
    expect: {
      newLayers: 2,
      history: [
        { createdBy: 'ENV foo=bar', emptyLayer: true },
        { createdBy: 'COPY foo /' },
        { createdBy: 'echo bar > bar' },
        { createdBy: 'CMD ["/bin/sh"]', emptyLayer: true },
        { createdBy: 'LABEL done=yes', emptyLayer: true },
      ],
      check: sameImageAs('example.com/moby/dockerfileids:cmd'),
    },
  },
];

declareCases(cases);
