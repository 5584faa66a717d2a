// Signal names and numbers as STOPSIGNAL accepts them (moby's signal.ParseSignal, Linux table).

const LINUX_SIGNALS: Record<string, number> = {
  ABRT: 6,
  ALRM: 14,
  BUS: 7,
  CHLD: 17,
  CLD: 17,
  CONT: 18,
  FPE: 8,
  HUP: 1,
  ILL: 4,
  INT: 2,
  IO: 29,
  IOT: 6,
  KILL: 9,
  PIPE: 13,
  POLL: 29,
  PROF: 27,
  PWR: 30,
  QUIT: 3,
  SEGV: 11,
  STKFLT: 16,
  STOP: 19,
  SYS: 31,
  TERM: 15,
  TRAP: 5,
  TSTP: 20,
  TTIN: 21,
  TTOU: 22,
  URG: 23,
  USR1: 10,
  USR2: 12,
  VTALRM: 26,
  WINCH: 28,
  XCPU: 24,
  XFSZ: 25,
  RTMIN: 34,
  RTMAX: 64,
};
for (let i = 1; i <= 15; i++) {
  LINUX_SIGNALS[`RTMIN+${i}`] = 34 + i;
  LINUX_SIGNALS[`RTMAX-${i}`] = 64 - i;
}

/**
 * parseSignal returns the number of a signal given as a number ("9") or a name with or without SIG, any case
 * ("SIGKILL", "kill", "RTMIN+3"), or null when it is neither. Zero is not a signal.
 */
export function parseSignal(raw: string): number | null {
  if (/^[+-]?[0-9]+$/.test(raw)) {
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n === 0) return null;
    return n;
  }
  const upper = raw.toUpperCase();
  const name = upper.startsWith('SIG') ? upper.slice(3) : upper;
  return Object.hasOwn(LINUX_SIGNALS, name) ? LINUX_SIGNALS[name]! : null;
}
