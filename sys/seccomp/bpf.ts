// An OCI `linux.seccomp` section → the classic BPF program the kernel runs for every syscall of the container
// (what libseccomp does for runc). Pure: the executor only installs the bytes (sys/nsexec.c, sys/nsexec.ts).
//
// Shape of the program, per architecture the profile lists and we have a table for (x86_64, x86):
//   load arch; not this arch → next section
//   load nr; (x86_64) x32 syscall numbers → the default action
//   binary search over syscall-number ranges; a leaf returns an action, or checks argument rules in profile order
// An architecture the profile does not list kills the process (libseccomp's default for a bad arch). Names that an
// architecture's table lacks are skipped for it, as runc does (profiles list names of several architectures).
import { InvalidInputError } from '../errors.js';
import { SYSCALLS } from './syscalls.js';

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: string;
}

export interface SeccompRule {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}

/** LinuxSeccomp is the OCI runtime spec's `linux.seccomp` object (the subset tsbuild compiles). */
export interface LinuxSeccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompRule[];
}

type Arch = 'x86_64' | 'x86';

const AUDIT_ARCH: Record<Arch, number> = { x86_64: 0xc000003e, x86: 0x40000003 };
const SCMP_ARCH: Record<string, Arch | 'x32'> = {
  SCMP_ARCH_X86_64: 'x86_64',
  SCMP_ARCH_X86: 'x86',
  SCMP_ARCH_X32: 'x32',
};
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;
const RET_KILL_PROCESS = 0x80000000;
/** BPF_MAXINSNS: the kernel refuses longer programs. */
const MAX_INSNS = 4096;

// Classic BPF opcodes (linux/filter.h).
const LD_W_ABS = 0x20;
const ALU_AND_K = 0x54;
const JMP_JA = 0x05;
const JMP_JEQ_K = 0x15;
const JMP_JGT_K = 0x25;
const JMP_JGE_K = 0x35;
const RET_K = 0x06;

/** actionValue turns an OCI action (+ errnoRet) into the SECCOMP_RET_* value a filter returns. */
export function actionValue(action: string, errnoRet?: number): number {
  const data = (n: number | undefined, dflt: number): number => {
    const v = n ?? dflt;
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new InvalidInputError(`seccomp: invalid errnoRet ${v}`);
    return v;
  };
  switch (action) {
    case 'SCMP_ACT_ALLOW':
      return 0x7fff0000;
    case 'SCMP_ACT_ERRNO':
      return (0x00050000 | data(errnoRet, EPERM)) >>> 0;
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return 0;
    case 'SCMP_ACT_KILL_PROCESS':
      return RET_KILL_PROCESS;
    case 'SCMP_ACT_TRAP':
      return 0x00030000;
    case 'SCMP_ACT_TRACE':
      return (0x7ff00000 | data(errnoRet, 0)) >>> 0;
    case 'SCMP_ACT_LOG':
      return 0x7ffc0000;
    default:
      throw new InvalidInputError(`seccomp: unsupported action ${JSON.stringify(action)}`);
  }
}

type Target = number | string; // relative offset, or a label
interface Insn {
  code: number;
  jt: Target;
  jf: Target;
  k: number;
}
type Item = Insn | { label: string };

class Assembler {
  readonly items: Item[] = [];
  private next = 0;
  label(): string {
    return `L${this.next++}`;
  }
  mark(label: string): void {
    this.items.push({ label });
  }
  emit(code: number, k: number, jt: Target = 0, jf: Target = 0): void {
    this.items.push({ code, jt, jf, k: k >>> 0 });
  }
  load(offset: number): void {
    this.emit(LD_W_ABS, offset);
  }
  ret(value: number): void {
    this.emit(RET_K, value);
  }
  jump(label: string): void {
    this.emit(JMP_JA, 0, 0, 0);
    (this.items[this.items.length - 1] as Insn & { ja?: string }).ja = label;
  }
  /** assemble resolves labels into relative offsets and encodes struct sock_filter entries (little-endian). */
  assemble(): Buffer {
    const at = new Map<string, number>();
    let pc = 0;
    for (const it of this.items) {
      if ('label' in it) at.set(it.label, pc);
      else pc++;
    }
    if (pc > MAX_INSNS)
      throw new InvalidInputError(
        `seccomp: the profile compiles to ${pc} instructions (the kernel takes ${MAX_INSNS})`,
      );
    const out = Buffer.alloc(pc * 8);
    pc = 0;
    const rel = (t: Target, from: number, limit: number): number => {
      const off = typeof t === 'number' ? t : (at.get(t) as number) - (from + 1);
      if (off < 0 || off > limit) throw new Error(`seccomp: jump offset ${off} out of range`);
      return off;
    };
    for (const it of this.items) {
      if ('label' in it) continue;
      const ja = (it as Insn & { ja?: string }).ja;
      out.writeUInt16LE(it.code, pc * 8);
      out.writeUInt8(ja ? 0 : rel(it.jt, pc, 255), pc * 8 + 2);
      out.writeUInt8(ja ? 0 : rel(it.jf, pc, 255), pc * 8 + 3);
      out.writeUInt32LE(ja ? rel(ja, pc, 0xffffffff) : it.k, pc * 8 + 4);
      pc++;
    }
    return out;
  }
}

interface Rule {
  args: SeccompArg[];
  ret: number;
}

/** Segment: syscall numbers lo..hi (inclusive) share one plan: rules tried in order, then `fallback`. */
interface Segment {
  lo: number;
  hi: number;
  rules: Rule[];
}

const split = (v: number): [number, number] => [(v % 2 ** 32) >>> 0, Math.floor(v / 2 ** 32) >>> 0];

function checkArg(a: SeccompArg): void {
  const ok = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!Number.isInteger(a.index) || a.index < 0 || a.index > 5)
    throw new InvalidInputError(`seccomp: argument index ${a.index} out of range 0-5`);
  if (!ok(a.value) || (a.valueTwo !== undefined && !ok(a.valueTwo)))
    throw new InvalidInputError(`seccomp: argument values must be integers from 0 to 2^53`);
}

/** emitArg jumps to `fail` unless argument `a` matches; 32-bit architectures compare the low word only. */
function emitArg(asm: Assembler, a: SeccompArg, wide: boolean, fail: string): void {
  checkArg(a);
  const lo = 16 + 8 * a.index;
  const hi = lo + 4;
  const pass = asm.label();
  const [vlo, vhi] = split(a.value);
  if (a.op === 'SCMP_CMP_MASKED_EQ') {
    const [dlo, dhi] = split(a.valueTwo ?? 0);
    if (wide) {
      asm.load(hi);
      asm.emit(ALU_AND_K, vhi);
      asm.emit(JMP_JEQ_K, dhi, 0, fail);
    } else if (dhi !== 0) asm.jump(fail); // the high word is 0 here
    asm.load(lo);
    asm.emit(ALU_AND_K, vlo);
    asm.emit(JMP_JEQ_K, dlo, 0, fail);
    return;
  }
  // Compare the high words first (a constant 0 on 32-bit architectures), then the low words.
  const high = (onGreater: Target, onLess: Target): void => {
    if (wide) {
      asm.load(hi);
      asm.emit(JMP_JGT_K, vhi, onGreater, 0);
      asm.emit(JMP_JEQ_K, vhi, 0, onLess);
    } else if (vhi > 0) asm.jump(onLess as string);
    asm.load(lo);
  };
  switch (a.op) {
    case 'SCMP_CMP_EQ':
      high(fail, fail);
      asm.emit(JMP_JEQ_K, vlo, 0, fail);
      break;
    case 'SCMP_CMP_NE':
      high(pass, pass);
      asm.emit(JMP_JEQ_K, vlo, fail, 0);
      break;
    case 'SCMP_CMP_GT':
      high(pass, fail);
      asm.emit(JMP_JGT_K, vlo, 0, fail);
      break;
    case 'SCMP_CMP_GE':
      high(pass, fail);
      asm.emit(JMP_JGE_K, vlo, 0, fail);
      break;
    case 'SCMP_CMP_LT':
      high(fail, pass);
      asm.emit(JMP_JGE_K, vlo, fail, 0);
      break;
    case 'SCMP_CMP_LE':
      high(fail, pass);
      asm.emit(JMP_JGT_K, vlo, fail, 0);
      break;
    default:
      throw new InvalidInputError(`seccomp: unsupported argument operator ${JSON.stringify(a.op)}`);
  }
  asm.mark(pass);
}

function emitLeaf(asm: Assembler, seg: Segment, fallback: number, wide: boolean): void {
  for (const rule of seg.rules) {
    if (rule.args.length === 0) {
      asm.ret(rule.ret);
      return;
    }
    const next = asm.label();
    for (const a of rule.args) emitArg(asm, a, wide, next);
    asm.ret(rule.ret);
    asm.mark(next);
  }
  asm.ret(fallback);
}

function emitTree(asm: Assembler, segs: Segment[], fallback: number, wide: boolean): void {
  if (segs.length === 1) {
    emitLeaf(asm, segs[0] as Segment, fallback, wide);
    return;
  }
  const mid = segs.length >> 1;
  const right = asm.label();
  asm.emit(JMP_JGE_K, (segs[mid] as Segment).lo, 0, 1);
  asm.jump(right);
  emitTree(asm, segs.slice(0, mid), fallback, wide);
  asm.mark(right);
  emitTree(asm, segs.slice(mid), fallback, wide);
}

/** sameRules: two lists of unconditional rules (no argument checks) that return the same values in the same order. */
function sameRules(a: Rule[], b: Rule[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Rule;
    const y = b[i] as Rule;
    if (x.ret !== y.ret || x.args.length !== 0 || y.args.length !== 0) return false;
  }
  return true;
}

/** segments groups an architecture's syscall numbers 0…∞ into ranges with the same rules. */
function segments(arch: Arch, profile: LinuxSeccomp): Segment[] {
  const table = SYSCALLS[arch];
  const byNr = new Map<number, Rule[]>();
  for (const entry of profile.syscalls ?? []) {
    if (!Array.isArray(entry.names)) throw new InvalidInputError('seccomp: a syscalls entry has no names list');
    const ret = actionValue(entry.action, entry.errnoRet);
    const args = entry.args ?? [];
    for (const a of args) checkArg(a);
    for (const name of entry.names) {
      const nr = table[name];
      if (nr === undefined) continue;
      const rules = byNr.get(nr) ?? [];
      // An unconditional rule ends the list: later rules for the same syscall can never match.
      if (!rules.some((r) => r.args.length === 0)) rules.push({ args, ret });
      byNr.set(nr, rules);
    }
  }
  const out: Segment[] = [];
  const push = (nr: number, rules: Rule[]): void => {
    const last = out[out.length - 1];
    if (last && last.hi === nr - 1 && sameRules(last.rules, rules)) last.hi = nr;
    else out.push({ lo: nr, hi: nr, rules });
  };
  const max = Math.max(...Object.values(table), ...byNr.keys());
  for (let nr = 0; nr <= max; nr++) push(nr, byNr.get(nr) ?? []);
  out.push({ lo: max + 1, hi: Number.MAX_SAFE_INTEGER, rules: [] });
  // Merge the trailing default range into a preceding one with no rules.
  const tail = out[out.length - 2];
  if (tail && tail.rules.length === 0) out.pop();
  return out;
}

/** nativeArch is the seccomp architecture of this process's machine, or undefined when we have no table for it. */
export function nativeArch(): Arch | undefined {
  return process.arch === 'x64' ? 'x86_64' : process.arch === 'ia32' ? 'x86' : undefined;
}

/**
 * compileSeccomp turns an OCI seccomp section into a BPF program (struct sock_filter[] bytes) for `native` and the
 * compatible architectures the profile lists. Throws InvalidInputError for what it cannot express.
 */
export function compileSeccomp(profile: LinuxSeccomp, native: Arch | undefined = nativeArch()): Buffer {
  if (!native)
    throw new InvalidInputError(
      `seccomp: no syscall table for this machine (${process.arch})`,
      'run with --security-opt seccomp=unconfined',
    );
  if (profile.flags && profile.flags.length > 0)
    throw new InvalidInputError(`seccomp: filter flags are not supported: ${profile.flags.join(', ')}`);
  const fallback = actionValue(profile.defaultAction, profile.defaultErrnoRet);
  const listed = new Set<Arch | 'x32'>([native]);
  for (const a of profile.architectures ?? []) {
    const arch = SCMP_ARCH[a];
    if (arch) listed.add(arch);
    // Other architectures cannot run on this machine's kernel; listing them changes nothing.
  }
  const arches = (['x86_64', 'x86'] as const).filter((a) => listed.has(a) && (native === 'x86_64' || a === native));
  const asm = new Assembler();
  for (const arch of arches) {
    const next = asm.label();
    asm.load(4);
    asm.emit(JMP_JEQ_K, AUDIT_ARCH[arch], 1, 0);
    asm.jump(next);
    asm.load(0);
    if (arch === 'x86_64') {
      // x32 syscalls arrive with the x86_64 arch and bit 30 set: with no x32 table, they get the default action.
      asm.emit(JMP_JGE_K, X32_SYSCALL_BIT, 0, 1);
      asm.ret(fallback);
    }
    emitTree(asm, segments(arch, profile), fallback, arch === 'x86_64');
    asm.mark(next);
  }
  asm.ret(RET_KILL_PROCESS);
  return asm.assemble();
}
