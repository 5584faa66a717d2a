// lseek with SEEK_DATA / SEEK_HOLE through koffi (Node's fs has no lseek), for walking the data of sparse files.
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';

const require = createRequire(import.meta.url);

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = osConstants.errno.ENXIO;

interface Lseek {
  lseek: (fd: number, off: number, whence: number) => number | bigint;
  errno: () => number;
}

let cached: Lseek | null | undefined;
function libc(): Lseek | null {
  if (cached !== undefined) return cached;
  try {
    const koffi = require('koffi');
    const lib = koffi.load('libc.so.6');
    cached = { lseek: lib.func('int64_t lseek(int fd, int64_t off, int whence)'), errno: () => koffi.errno() };
  } catch {
    cached = null; // no koffi build or no glibc: callers fall back to reading everything
  }
  return cached;
}

/** SeekError is a failed lseek, shaped like Node's fs errors (code, syscall). */
export class SeekError extends Error {
  readonly errno: number;
  readonly code: string;
  readonly syscall = 'lseek';
  constructor(errno: number) {
    const code = Object.entries(osConstants.errno).find(([, v]) => v === errno)?.[0] ?? `errno ${errno}`;
    super(`lseek: ${code}`);
    this.errno = errno;
    this.code = code;
  }
}

/** canSeekData tells whether seekData/seekHole can be called on this machine (koffi and libc load). */
export function canSeekData(): boolean {
  return libc() !== null;
}

function seek(fd: number, offset: number, whence: number): number | undefined {
  const l = libc();
  if (!l) throw new SeekError(osConstants.errno.ENOSYS ?? 38);
  const r = Number(l.lseek(fd, offset, whence));
  if (r >= 0) return r;
  const errno = l.errno();
  if (errno === ENXIO) return undefined;
  throw new SeekError(errno);
}

/**
 * seekData returns the first offset at or after `offset` that holds data, or undefined when only a hole (or the end
 * of the file) follows. Filesystems without hole tracking report everything as data. Moves the fd's file position.
 */
export function seekData(fd: number, offset: number): number | undefined {
  return seek(fd, offset, SEEK_DATA);
}

/** seekHole returns the start of the first hole at or after `offset` (the file size counts as a hole). */
export function seekHole(fd: number, offset: number): number | undefined {
  return seek(fd, offset, SEEK_HOLE);
}
