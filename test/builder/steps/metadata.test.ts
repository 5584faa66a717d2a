// Metadata instructions applied to an image config, as BuildKit's dispatchers apply them (used by the builder and
// by `tsbuild import --change`).
import test from 'ava';
import { applyConfigChanges, exposedPorts, setEnv } from '../../../builder/steps/metadata.js';

test('ENV replaces a variable where it already is, keeping the order, and appends a new one', (t) => {
  t.deepEqual(setEnv(['PATH=/bin', 'A=1', 'B=2'], 'A', 'x'), ['PATH=/bin', 'A=x', 'B=2']);
  t.deepEqual(setEnv(['PATH=/bin'], 'C', '3'), ['PATH=/bin', 'C=3']);
  t.deepEqual(applyConfigChanges({ Env: ['A=1', 'B=2'] }, ['ENV A=3 C=$B']).Env, ['A=3', 'B=2', 'C=2']);
});

test('EXPOSE takes ranges and protocols, and the container part of a published port', (t) => {
  t.deepEqual(exposedPorts('80'), ['80/tcp']);
  t.deepEqual(exposedPorts('53/UDP'), ['53/udp']);
  t.deepEqual(exposedPorts('8000-8002/tcp'), ['8000/tcp', '8001/tcp', '8002/tcp']);
  t.deepEqual(exposedPorts('8080:80'), ['80/tcp']);
  t.deepEqual(exposedPorts('127.0.0.1:8080:80/udp'), ['80/udp']);
  t.deepEqual(exposedPorts('[::1]:8080:80'), ['80/tcp']);
  t.deepEqual(exposedPorts('127.0.0.1::80'), ['80/tcp']);
  t.throws(() => exposedPorts('http'), { message: /invalid port "http"/ });
  t.throws(() => exposedPorts('90-80'), { message: /invalid port range/ });
  t.throws(() => exposedPorts('70000'), { message: /invalid port range/ });
});

test('one EXPOSE word may expand to several ports', (t) => {
  const c = applyConfigChanges({ Env: ['PORTS=80 443/tcp'] }, ['EXPOSE $PORTS 53/udp']);
  t.deepEqual(Object.keys(c.ExposedPorts ?? {}).sort(), ['443/tcp', '53/udp', '80/tcp']);
});

test('ENTRYPOINT clears an inherited CMD, but not one set by the same changes', (t) => {
  t.is(applyConfigChanges({ Cmd: ['sh'] }, ['ENTRYPOINT ["/app"]']).Cmd, null);
  t.deepEqual(applyConfigChanges({ Cmd: ['sh'] }, ['CMD ["--help"]', 'ENTRYPOINT ["/app"]']).Cmd, ['--help']);
});

test('a change that is not metadata is refused naming what is allowed', (t) => {
  t.throws(() => applyConfigChanges({}, ['RUN true']), { message: /RUN is not a config change/ });
});
