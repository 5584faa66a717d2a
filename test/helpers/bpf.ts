// A classic-BPF interpreter for seccomp programs, the test oracle of sys/seccomp/bpf.ts: it runs a program on a
// struct seccomp_data the way the kernel does (only the instructions seccomp allows).

export interface SeccompData {
  nr: number;
  /** AUDIT_ARCH_* */
  arch: number;
  /** up to six 64-bit arguments */
  args?: bigint[];
}

export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;

function word(d: SeccompData, offset: number): number {
  if (offset === 0) return d.nr >>> 0;
  if (offset === 4) return d.arch >>> 0;
  if (offset >= 16 && offset < 64 && offset % 4 === 0) {
    const v = d.args?.[(offset - 16) >> 3] ?? 0n;
    return Number(offset % 8 === 0 ? v & 0xffffffffn : (v >> 32n) & 0xffffffffn);
  }
  throw new Error(`load from offset ${offset}`);
}

/** runFilter returns the SECCOMP_RET_* value the program gives for `d`. */
export function runFilter(program: Buffer, d: SeccompData): number {
  const n = program.length / 8;
  let a = 0;
  for (let pc = 0; pc < n;) {
    const code = program.readUInt16LE(pc * 8);
    const jt = program.readUInt8(pc * 8 + 2);
    const jf = program.readUInt8(pc * 8 + 3);
    const k = program.readUInt32LE(pc * 8 + 4);
    pc++;
    switch (code) {
      case 0x20: // ld w abs
        a = word(d, k);
        break;
      case 0x54: // and k
        a = (a & k) >>> 0;
        break;
      case 0x05: // ja
        pc += k;
        break;
      case 0x15: // jeq k
        pc += a === k ? jt : jf;
        break;
      case 0x25: // jgt k
        pc += a > k ? jt : jf;
        break;
      case 0x35: // jge k
        pc += a >= k ? jt : jf;
        break;
      case 0x45: // jset k
        pc += (a & k) !== 0 ? jt : jf;
        break;
      case 0x06: // ret k
        return k;
      default:
        throw new Error(`opcode 0x${code.toString(16)} at ${pc - 1}`);
    }
    if (pc > n) throw new Error('jump past the end');
  }
  throw new Error('fell off the end of the program');
}

export const RET = {
  ALLOW: 0x7fff0000,
  KILL_PROCESS: 0x80000000,
  errno: (e: number): number => (0x00050000 | e) >>> 0,
} as const;
