// BuildKit's frontend/dockerfile/dockerfile_runsecurity_test.go, replayed offline (see harness.ts and README.md).
// `--allow security.insecure` is BuildKit's AllowedEntitlements; the denied half of each test is its
// securityInsecureDenied branch (the entitlement not given).
//
// Adapted: BuildKit asserts that the bounding set holds capabilities 0-37; it grants what its own process holds
// (cap.Current), and so do we: the insecure step's CapBnd is this process's (this test machine may lack one, e.g.
// CAP_SYS_RESOURCE). testInsecureDevicesWhitelist runs on busybox (apk, fuse and the hellofs image need the
// network): the devices, dmesg and a loop mount of an ext2 image made with busybox's mke2fs.
import { readFileSync } from 'node:fs';
import { declareCases, type BkCase } from './harness.js';

const F = 'dockerfile_runsecurity_test.go';
const allow = ['security.insecure'];
const ours = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
const SANDBOX_CAPS = `[ "$(cat /proc/self/status | grep CapBnd)" == "CapBnd:\t00000000a80425fb" ]`;

export const cases: BkCase[] = [
  {
    from: `${F} testRunSecurityInsecure`,
    title: 'RUN --security=insecure gets every capability this process holds; the next RUN is sandboxed again',
    dockerfile: `FROM busybox
RUN --security=insecure [ "$(cat /proc/self/status | grep CapBnd)" == "CapBnd:\t${ours}" ]
RUN ${SANDBOX_CAPS}
`,
    allow,
    expect: { newLayers: 2 },
  },
  {
    from: `${F} testRunSecurityInsecure`,
    title: 'RUN --security=insecure without the entitlement fails: security.insecure is not allowed',
    dockerfile: 'FROM busybox\nRUN --security=insecure true\n',
    expect: { error: /Dockerfile:2: security\.insecure is not allowed/ },
  },
  {
    from: `${F} testRunSecuritySandbox`,
    title: 'RUN --security=sandbox has docker default capabilities',
    dockerfile: `FROM busybox\nRUN --security=sandbox ${SANDBOX_CAPS}\n`,
    expect: { newLayers: 1 },
  },
  {
    from: `${F} testRunSecurityDefault`,
    title: 'a RUN without --security is sandboxed even with the entitlement',
    dockerfile: `FROM busybox\nRUN ${SANDBOX_CAPS}\n`,
    allow,
    expect: { newLayers: 1 },
  },
  {
    from: `${F} testInsecureDevicesWhitelist`,
    title: 'an insecure RUN gets fuse and loop devices, reads the kernel log and mounts a loop device',
    dockerfile: `FROM busybox
RUN [ ! -e /dev/fuse ] && [ ! -e /dev/loop-control ]
RUN --security=insecure [ -c /dev/fuse ] && [ -c /dev/loop-control ] && [ -b /dev/loop0 ]
RUN --security=insecure dmesg > /dev/null
RUN --security=insecure dd if=/dev/zero of=/disk.img bs=1M count=8 2>/dev/null && mke2fs -q -F /disk.img && \\
  mkdir -p /mnt && mount -o loop /disk.img /mnt && touch /mnt/foo && [ -f /mnt/foo ] && umount /mnt && rm /disk.img
`,
    allow,
    expect: { files: { 'disk.img': 'absent', 'mnt/foo': 'absent' } },
  },
  {
    from: `${F} testInsecureDevicesWhitelist`,
    title: 'without the entitlement an insecure RUN fails before anything runs',
    dockerfile: 'FROM busybox\nRUN true\nRUN --security=insecure [ -c /dev/fuse ]\n',
    expect: { error: /Dockerfile:3: security\.insecure is not allowed/ },
  },
  {
    from: `${F} (BuildKit's insecure spec: no seccomp)`,
    title: 'an insecure RUN has no seccomp filter; a sandboxed one has the default profile',
    dockerfile: `FROM busybox
RUN --security=insecure grep -q '^Seccomp:.*0$' /proc/self/status
RUN grep -q '^Seccomp:.*2$' /proc/self/status
`,
    allow,
    expect: { newLayers: 2 },
  },
  {
    from: `${F} (BuildKit's insecure spec: no masked or read-only paths, writable sysfs)`,
    title: 'an insecure RUN writes /proc/sys (its own hostname) and sees /sys read-write and /proc/timer_list unmasked',
    dockerfile: `FROM busybox
RUN --security=insecure echo insecure > /proc/sys/kernel/hostname && [ "$(hostname)" = insecure ]
RUN --security=insecure grep -q ' /sys sysfs rw' /proc/mounts && ! grep -q ' /proc/timer_list ' /proc/mounts
`,
    allow,
    expect: { newLayers: 2 },
  },
  {
    from: `${F} (the security mode is in the cache key, BuildKit's ExecOp.security)`,
    title: 'the same command as an insecure RUN is not the cached sandboxed one',
    before: [
      { tag: 'bk-sec-sandbox:latest', dockerfile: 'FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /stamp\n' },
    ],
    dockerfile: 'FROM busybox\nRUN --security=insecure cat /proc/sys/kernel/random/uuid > /stamp\n',
    allow,
    expect: {
      check: async (t, r) => {
        const { readImageFile } = await import('./harness.js');
        const before = await readImageFile(r.store, 'bk-sec-sandbox:latest', 'stamp');
        t.not(readFileSync(`${r.root!}/stamp`, 'utf8'), before);
      },
    },
  },
  {
    from: 'instructions/commands_runsecurity.go runSecurityPostHook',
    title: 'an unknown --security value: security "foo" is not valid',
    dockerfile: 'FROM busybox\nRUN --security=foo true\n',
    expect: { error: /Dockerfile:2: security "foo" is not valid/ },
  },
];

declareCases(cases);
