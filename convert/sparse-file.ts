// Where a (possibly sparse) file keeps its data, so that converters can skip holes without reading them.
import { canSeekData, seekData, seekHole } from '../sys/seek.js';

export interface ByteRange {
  start: number;
  end: number;
}

/**
 * dataRanges lists the parts of the open file `fd` (of `size` bytes) that may hold data, widened to multiples of
 * `align` bytes (the last range is clamped to `size`), sorted, merged and non-overlapping. Holes are left out; the
 * listed ranges can still contain zeros. When the system cannot answer SEEK_DATA/SEEK_HOLE, the whole file is
 * one range. Moves the fd's file position (use positioned reads afterwards).
 */
export function dataRanges(fd: number, size: number, align = 1): ByteRange[] {
  if (size <= 0) return [];
  if (!canSeekData()) return [{ start: 0, end: size }];
  const out: ByteRange[] = [];
  try {
    let pos = 0;
    while (pos < size) {
      const data = seekData(fd, pos);
      if (data === undefined || data >= size) break;
      const hole = Math.min(seekHole(fd, data) ?? size, size);
      const start = Math.floor(data / align) * align;
      const end = Math.min(Math.ceil(hole / align) * align, size);
      const last = out[out.length - 1];
      if (last && start <= last.end) last.end = Math.max(last.end, end);
      else out.push({ start, end });
      pos = Math.max(hole, end);
    }
  } catch {
    // EINVAL/ENOTSUP on odd files (pipes, some FUSE filesystems): read everything
    return [{ start: 0, end: size }];
  }
  return out;
}
