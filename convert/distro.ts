// Which distribution a rootfs is: /etc/os-release (or /usr/lib/os-release) read into the few facts the converter
// needs. Debian, Ubuntu and Alpine are supported; anything else gets an error that says how to bring a kernel.
import { readFileSync } from 'node:fs';
import { TsbuildError } from '../sys/errors.js';
import { secureJoin } from '../sys/secure-path.js';

export type DistroId = 'debian' | 'ubuntu' | 'alpine';
export type DistroFamily = 'debian' | 'alpine';

/** Distro is what the converter knows about the system in the image. */
export interface Distro {
  /** the os-release ID, or the first supported ID_LIKE entry */
  id: DistroId;
  family: DistroFamily;
  /** VERSION_ID ('12', '22.04', '3.20.3'); '' when absent (Debian testing/sid) */
  versionId: string;
  /** PRETTY_NAME, else NAME, else the id */
  prettyName: string;
}

/** OsRelease is the raw key/value content of an os-release file. */
export type OsRelease = Record<string, string>;

export const SUPPORTED_DISTROS: readonly DistroId[] = ['debian', 'ubuntu', 'alpine'];

/** UnsupportedDistroError: the image is not one of the distributions whose kernel and init tsbuild knows. */
export class UnsupportedDistroError extends TsbuildError {
  constructor(readonly found: string) {
    super(
      'E_UNSUPPORTED_DISTRO',
      `cannot make ${found} bootable on its own: tsbuild export supports ${SUPPORTED_DISTROS.join(', ')}`,
      {
        hint: 'bring the kernel yourself: --kernel PATH [--initrd PATH] (a host file), or --kernel image when the image has /boot/vmlinuz-*',
      },
    );
  }
}

/**
 * parseOsRelease reads os-release text (os-release(5)): KEY=value lines, values optionally in single or double
 * quotes with shell-style backslash escapes inside double quotes; comments and malformed lines are skipped.
 */
export function parseOsRelease(text: string): OsRelease {
  const out: OsRelease = {};
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2] as string;
    if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\([\\$"`])/g, '$1');
    else if (v.length >= 2 && v.startsWith("'") && v.endsWith("'")) v = v.slice(1, -1);
    out[m[1] as string] = v;
  }
  return out;
}

/**
 * distroOf maps os-release fields to a supported Distro: ID first, then each ID_LIKE entry (so that a Debian
 * derivative such as Raspbian or Kali counts as debian). Returns undefined for anything else.
 */
export function distroOf(os: OsRelease): Distro | undefined {
  const ids = [os.ID ?? '', ...(os.ID_LIKE ?? '').split(/\s+/)].map((s) => s.toLowerCase()).filter(Boolean);
  const id = ids.find((i): i is DistroId => (SUPPORTED_DISTROS as readonly string[]).includes(i));
  if (!id) return undefined;
  return {
    id,
    family: id === 'alpine' ? 'alpine' : 'debian',
    versionId: os.VERSION_ID ?? '',
    prettyName: os.PRETTY_NAME || os.NAME || id,
  };
}

/** readOsRelease reads /etc/os-release, else /usr/lib/os-release, of a rootfs; undefined when neither exists. */
export function readOsRelease(rootfs: string): OsRelease | undefined {
  for (const rel of ['etc/os-release', 'usr/lib/os-release']) {
    try {
      return parseOsRelease(readFileSync(secureJoin(rootfs, rel), 'utf8'));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') throw err;
    }
  }
  return undefined;
}

/**
 * detectDistro tells which supported distribution the rootfs holds; throws UnsupportedDistroError (naming what it
 * found, listing what is supported, and how to pass --kernel) for anything else or when os-release is missing.
 */
export function detectDistro(rootfs: string): Distro {
  const os = readOsRelease(rootfs);
  if (!os) throw new UnsupportedDistroError('an image without /etc/os-release');
  const d = distroOf(os);
  if (!d)
    throw new UnsupportedDistroError(
      `${JSON.stringify(os.PRETTY_NAME || os.NAME || os.ID || 'unknown')} (os-release ID=${os.ID ?? ''})`,
    );
  return d;
}
