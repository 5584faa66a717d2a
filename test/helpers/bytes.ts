// Test inputs made of bytes that are the same on every run.
import { createHash } from 'node:crypto';

/** noise makes incompressible bytes that are the same on every run (SHA-256 of `seed:counter`). */
export function noise(size: number, seed: string): Buffer {
  const out = Buffer.alloc(size);
  for (let i = 0; i * 32 < size; i++)
    createHash('sha256')
      .update(`${seed}:${i}`)
      .digest()
      .copy(out, i * 32);
  return out;
}
