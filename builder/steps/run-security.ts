// RUN --security and the --allow entitlements, BuildKit's way (frontend instructions/commands_runsecurity.go,
// util/entitlements, executor/oci/spec_linux.go).
//
// `--security=sandbox` (the default) is the ordinary RUN sandbox. `--security=insecure` needs the entitlement
// security.insecure (`--allow security.insecure`; root is not entitled by itself, as BuildKit asks for it
// explicitly) and runs the step with BuildKit's insecure spec: every capability this process holds, no seccomp
// filter, no masked or read-only paths, /sys writable (RunSpec.privileged), and outside a user namespace the devices
// BuildKit adds (/dev/kmsg, cuse, fuse, kvm, net/tun, loop-control, loop devices).
import { readdirSync, readFileSync } from 'node:fs';
import { InvalidInputError } from '../../sys/errors.js';
import { CAPABILITY_NUMBERS, type Device, type RunSpec } from '../../runtime/spec.js';

/** ENTITLEMENTS are the --allow names tsbuild implements. */
export const ENTITLEMENTS: readonly string[] = ['network.host', 'security.insecure'];

/** checkEntitlements refuses --allow names that are not implemented. */
export function checkEntitlements(allow: readonly string[]): void {
  for (const a of allow)
    if (!ENTITLEMENTS.includes(a))
      throw new InvalidInputError(
        `--allow ${a}: unknown entitlement`,
        `the entitlements are ${ENTITLEMENTS.join(', ')}`,
      );
}

export type SecurityMode = 'sandbox' | 'insecure';

/** securityMode reads RUN's --security value; undefined (not given) is the sandbox. BuildKit's message otherwise. */
export function securityMode(value: string | undefined): SecurityMode {
  if (value === undefined || value === 'sandbox') return 'sandbox';
  if (value === 'insecure') return 'insecure';
  throw new InvalidInputError(`security ${JSON.stringify(value)} is not valid`);
}

/** heldCapabilities is this process's bounding set by name (BuildKit grants what it holds itself: cap.Current). */
export function heldCapabilities(read: () => string = () => readFileSync('/proc/self/status', 'utf8')): string[] {
  const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(read())?.[1];
  const mask = hex === undefined ? 0n : BigInt(`0x${hex}`);
  return Object.entries(CAPABILITY_NUMBERS)
    .filter(([, bit]) => ((mask >> BigInt(bit)) & 1n) === 1n)
    .sort((a, b) => a[1] - b[1])
    .map(([name]) => name);
}

/** insecureDevices are the nodes BuildKit's insecure spec adds: loop devices up to 8 past the host's last one. */
export function insecureDevices(devNames: () => string[] = () => readdirSync('/dev')): Device[] {
  const node = (path: string, major: number, minor: number, type: 'c' | 'b' = 'c'): Device => ({
    path,
    type,
    major,
    minor,
    mode: 0o666,
  });
  const out = [
    node('/dev/kmsg', 1, 11),
    node('/dev/cuse', 10, 203),
    node('/dev/fuse', 10, 229),
    node('/dev/kvm', 10, 232),
    node('/dev/net/tun', 10, 200),
    node('/dev/loop-control', 10, 237),
  ];
  let last = -1;
  try {
    for (const n of devNames()) {
      const m = /^loop(\d+)$/.exec(n);
      if (m) last = Math.max(last, Number(m[1]));
    }
  } catch {
    // no /dev to read: loop0 … loop7
  }
  for (let i = 0; i <= last + 8; i++) out.push(node(`/dev/loop${i}`, 7, i, 'b'));
  return out;
}

/** insecureSpec turns a RUN's spec into BuildKit's insecure one; `devices` is false in a user namespace. */
export function insecureSpec(spec: RunSpec, o: { devices: boolean }): RunSpec {
  const out: RunSpec = { ...spec, capabilities: heldCapabilities(), seccomp: 'unconfined', privileged: true };
  if (o.devices) {
    const have = new Set((spec.devices ?? []).map((d) => d.path));
    out.devices = [...(spec.devices ?? []), ...insecureDevices().filter((d) => !have.has(d.path))];
  }
  return out;
}
