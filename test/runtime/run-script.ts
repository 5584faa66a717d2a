// A separate Node parent for runContainer, so that tests can signal or kill -9 the parent without touching ava.
// Usage: node --import tsx test/runtime/run-script.ts '<json: {spec, executor}>'; exits with the container's code.
import { runContainer } from '../../runtime/run.js';
import type { RunSpec } from '../../runtime/spec.js';
import type { Executor } from '../../sys/namespaces.js';

const { spec, executor } = JSON.parse(process.argv[2] as string) as { spec: RunSpec; executor: Executor };
const r = await runContainer(spec, { stdout: 'inherit', stderr: 'inherit' }, { executor });
process.exitCode = r.exitCode;
