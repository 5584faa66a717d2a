// The QEMU runner, on a 512-byte boot sector that prints a line on the serial port (no OS: a few seconds of TCG).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bootDisk, chooseAccel, diskFormat, PROBE_MARKER, probeSector, qemuArgs } from '../../convert/boot.js';
import { accelArgs, PROBE_SOURCE } from '../../convert/kvm-probe.js';
import { which } from '../../sys/exec.js';
import { makeTempDir, removeDir } from '../helpers/index.js';

const qemu = existsSync('/usr/bin/qemu-system-x86_64') ? test : test.skip;
const binutils = which('as') && which('ld') ? test : test.skip;

async function probeDisk(t: { teardown(f: () => unknown): void }): Promise<string> {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const disk = join(dir, 'probe.img');
  await writeFile(disk, Buffer.concat([probeSector(), Buffer.alloc((1 << 20) - 512)])); // SeaBIOS skips a one-sector virtio disk
  return disk;
}

test('the probe sector is a boot sector that prints each mode it reaches, the marker last', (t) => {
  const s = probeSector();
  t.is(s.length, 512);
  t.deepEqual([s[510], s[511]], [0x55, 0xaa]);
  const text = s.toString('latin1');
  t.true(text.indexOf('tsbuild-kvm-probe: real mode') < text.indexOf('tsbuild-kvm-probe: protected mode'));
  t.true(text.indexOf('tsbuild-kvm-probe: protected mode') < text.indexOf(PROBE_MARKER));
});

binutils('the probe sector is PROBE_SOURCE assembled', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  await writeFile(join(dir, 'probe.S'), PROBE_SOURCE);
  execFileSync('as', ['--32', '-o', join(dir, 'probe.o'), join(dir, 'probe.S')]);
  execFileSync('ld', [
    '-m',
    'elf_i386',
    '-Ttext=0x7c00',
    '--oformat',
    'binary',
    '-o',
    join(dir, 'probe.bin'),
    join(dir, 'probe.o'),
  ]);
  t.deepEqual(await readFile(join(dir, 'probe.bin')), probeSector());
});

test('the KVM probe and the boot use the same machine type, CPU model and SMP count', (t) => {
  const args = qemuArgs({ disk: '/d', format: 'raw', accel: 'kvm', memory: '1G', serialLog: '/s' });
  const mine = accelArgs('kvm');
  t.deepEqual(mine, ['-machine', 'pc,accel=kvm', '-cpu', 'host', '-smp', '2']);
  const at = args.indexOf('-machine');
  t.deepEqual(args.slice(at, at + mine.length), mine);
});

test('QEMU gets the disk on virtio with snapshot=on, the serial port in a file, and OVMF when asked', (t) => {
  const args = qemuArgs({
    disk: '/d.qcow2',
    format: 'qcow2',
    accel: 'tcg',
    memory: '1G',
    serialLog: '/tmp/s.log',
    ovmf: { code: '/c.fd', vars: '/v.fd' },
  });
  t.true(args.includes('file=/d.qcow2,format=qcow2,if=virtio,snapshot=on'));
  t.true(args.includes('file,id=serial0,path=/tmp/s.log'));
  t.true(args.includes('pc,accel=tcg'));
  t.true(args.includes('if=pflash,format=raw,unit=0,readonly=on,file=/c.fd'));
});

qemu('the disk format is read from the file, not its name', async (t) => {
  const disk = await probeDisk(t);
  t.is(await diskFormat(disk), 'raw');
  const q = `${disk}.qcow2`;
  execFileSync('qemu-img', ['convert', '-O', 'qcow2', disk, q]);
  t.is(await diskFormat(q), 'qcow2');
});

qemu('bootDisk stops QEMU as soon as the expected text shows up on the serial console', async (t) => {
  const disk = await probeDisk(t);
  let streamed = '';
  const r = await bootDisk({
    disk,
    expect: new RegExp(PROBE_MARKER),
    timeoutMs: 60_000,
    kvm: 'off',
    memory: '32M',
    onOutput: (s) => (streamed += s),
  });
  t.is(r.outcome, 'matched');
  t.is(r.accel, 'tcg');
  t.is(r.match, PROBE_MARKER);
  t.true(streamed.includes(PROBE_MARKER));
  t.true(r.seconds < 60);
});

qemu('bootDisk gives up at the timeout and stops QEMU', async (t) => {
  const disk = await probeDisk(t);
  const r = await bootDisk({ disk, expect: /login:/, timeoutMs: 3_000, kvm: 'off', memory: '32M' });
  t.is(r.outcome, 'timeout');
  t.true(r.output.includes(PROBE_MARKER));
  t.true(r.seconds >= 3 && r.seconds < 30);
});

qemu('bootDisk reports a kernel panic as soon as it is printed', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  // a boot sector that prints a panic line: the probe sector with its first message (31 bytes) replaced
  const s = probeSector();
  const at = s.indexOf('tsbuild-kvm-probe: real mode');
  Buffer.from('Kernel panic - not syncing\r\n\0', 'latin1').copy(s, at);
  const disk = join(dir, 'panic.img');
  await writeFile(disk, Buffer.concat([s, Buffer.alloc((1 << 20) - 512)]));
  const r = await bootDisk({ disk, timeoutMs: 60_000, kvm: 'off', memory: '32M' });
  t.is(r.outcome, 'panic');
});

test('--kvm off is TCG; auto never fails (it falls back to TCG)', async (t) => {
  const dir = await makeTempDir();
  t.teardown(() => removeDir(dir));
  const cacheFile = join(dir, 'kvm-probe.json'); // private: the machine's own verdict is neither read nor written
  t.deepEqual(await chooseAccel('off', { cacheFile }), { accel: 'tcg' });
  t.true(['kvm', 'tcg'].includes((await chooseAccel('auto', { cacheFile })).accel));
  await t.throwsAsync(chooseAccel('sometimes' as 'auto'), { message: /--kvm must be/ });
});
