// BuildKit's frontend/dockerfile/dockerfile_history_test.go, replayed offline (see harness.ts and README.md).
// testHistoryError and testHistoryFinalizeTrace read BuildKit's build-history API (records, traces): not ported.
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_history_test.go';

export const cases: BkCase[] = [
  {
    from: `${F} testExportedHistory`,
    title: 'history has one entry per instruction of the final stage, empty_layer as BuildKit sets it',
    dockerfile: `FROM busybox AS base
ENV foo=bar
COPY foo /foo2
FROM busybox
LABEL lbl=val
COPY --from=base foo2 foo3
WORKDIR /
RUN echo bar > foo4
RUN ["ls"]
EXPOSE 2375 5000 1234/udp
`,
    context: { foo: { content: 'contents0', mode: 0o600 } },
    expect: {
      newLayers: 3,
      history: [
        { createdBy: 'lbl=val', emptyLayer: true },
        { createdBy: 'COPY foo2 foo3' },
        { createdBy: 'WORKDIR /', emptyLayer: true },
        { createdBy: 'echo bar > foo4' },
        { createdBy: 'RUN ls' },
        { createdBy: 'EXPOSE [1234/udp 2375/tcp 5000/tcp]', emptyLayer: true },
      ],
      check: (t, { image }) => {
        for (const h of image.config.history ?? []) t.truthy(h.created, `${h.created_by} has a created time`);
      },
    },
  },
  {
    from: `${F} testExportedHistoryFlattenArgs`,
    title: 'a redeclared ARG gets its own history entry and RUN lists each ARG once, with its last value',
    dockerfile: 'FROM busybox\nARG foo=bar\nARG bar=123\nARG foo=bar2\nRUN ls /etc/\n',
    expect: {
      history: [
        { createdBy: /^ARG foo=bar$/, emptyLayer: true },
        { createdBy: 'ARG bar=123', emptyLayer: true },
        { createdBy: 'ARG foo=bar2', emptyLayer: true },
        { createdBy: /^RUN \|2 foo=bar2 bar=123 .*ls \/etc\/(?!.*ARG foo=bar)/ },
      ],
    },
  },
];

declareCases(cases);
