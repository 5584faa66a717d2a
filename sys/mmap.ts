// Read-only shared mappings of a file's pages (mmap), through koffi: a big file is read where it lies in the page
// cache instead of being copied into a buffer first.
//
// A mapping's buffer must not be used after unmap(), and the mapped part of the file must not shrink while it is
// mapped: touching a page past the end of the file raises SIGBUS, which ends the process. So map only files this
// process owns the lifetime of (a scratch file in a private directory), never one another user can truncate.
import { loadKoffi, SysError } from './libc.js';

/** FileMapping is `length` bytes of a file from `offset`, readable as a Buffer until unmap(). */
export interface FileMapping {
  readonly buffer: Buffer;
  unmap(): void;
}

type Fn = (...args: unknown[]) => unknown;
interface MmapLib {
  view(ptr: unknown, length: number): ArrayBuffer;
  address(ptr: unknown): bigint;
  errno(): number;
  mmap: Fn;
  munmap: Fn;
  pageSize: number;
}

const PROT_READ = 1;
const MAP_SHARED = 1;
/** pre-fault the pages at mmap time (one call instead of a fault per page); the value of x86-64 and arm64 */
const MAP_POPULATE = 0x8000;
const MAP_FAILED = 0xffffffffffffffffn;

let cached: MmapLib | null | undefined;

function lib(): MmapLib | null {
  if (cached !== undefined) return cached;
  // MAP_POPULATE's value differs on some other architectures: there, no mappings (callers read instead).
  if (process.platform !== 'linux' || (process.arch !== 'x64' && process.arch !== 'arm64')) return (cached = null);
  const koffi = loadKoffi() as unknown as Omit<MmapLib, 'mmap' | 'munmap' | 'pageSize'> & {
    load(path: string): { func(decl: string): Fn };
  };
  const l = koffi.load('libc.so.6');
  const getpagesize = l.func('int getpagesize()');
  cached = {
    view: (ptr, length) => koffi.view(ptr, length),
    address: (ptr) => koffi.address(ptr),
    errno: () => koffi.errno(),
    mmap: l.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: l.func('int munmap(void *addr, size_t length)'),
    pageSize: getpagesize() as number,
  };
  return cached;
}

/** canMap tells whether mapFile works on this machine (Linux on x86-64 or arm64). */
export function canMap(): boolean {
  return lib() !== null;
}

/**
 * mapFile maps `length` bytes of the open file `fd` from `offset` (any offset: the mapping starts at the page
 * below it), read-only and shared, its pages faulted in at once. Throws a SysError when mmap fails, an Error where
 * mappings are not available (see canMap). `offset + length` must not pass the end of the file.
 */
export function mapFile(fd: number, offset: number, length: number): FileMapping {
  const l = lib();
  if (l === null) throw new Error(`mmap is not available on ${process.platform}/${process.arch}`);
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length <= 0)
    throw new RangeError(`mapFile: bad range ${offset}+${length}`);
  const start = offset - (offset % l.pageSize);
  const span = length + (offset - start);
  const ptr = l.mmap(null, span, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, start);
  if (ptr === null || l.address(ptr) === MAP_FAILED) {
    throw new SysError('mmap', l.errno());
  }
  let mapped = true;
  return {
    buffer: Buffer.from(l.view(ptr, span), offset - start, length),
    unmap(): void {
      if (!mapped) return;
      mapped = false;
      l.munmap(ptr, span);
    },
  };
}
