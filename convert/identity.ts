// Every identifier and time an exported disk carries, in one place. With SOURCE_DATE_EPOCH set, all of them are
// derived from the image and the options, so exporting the same image twice (another store, another output path,
// another day) gives the same bytes; without it, the identifiers come from one random seed (fresh UUIDs: two
// exports of one image can be attached to one machine without clashing) and times are left as they are.
//
//   seed      = SHA-256("tsbuild-disk-v1" NUL image digest NUL canonical JSON of the disk options)   (reproducible)
//             = 32 random bytes                                                                      (otherwise)
//   id(label) = SHA-256(seed NUL label)
//   UUID      = the first 16 bytes of id(label), version nibble 4, variant 10 (RFC 4122 v4-shaped)
//   serial    = the first 4 bytes of id(label), big-endian, never 0
//
// Labels: `root-uuid` (ext4 UUID, unless --uuid), `ext4-hash-seed`, `mbr-signature`, `gpt-disk-guid`,
// `gpt-partition-<index>`, `esp-serial`, `vmdk-cid`, `password-salt`. The disk options are those that change the
// disk's contents (not the output path, format or compression): boot, bootloader, partition table, size, kernel,
// cmdline, hostname, network, service, SHA-256 of the root password, SSH keys and --uuid, plus the image's name
// (the default hostname and the boot menu's title).
import { createHash, randomBytes } from 'node:crypto';
import { InvalidInputError } from '../sys/errors.js';

export const IDENTITY_DOMAIN = 'tsbuild-disk-v1';

/** UUID_RE is the textual form --uuid accepts: 8-4-4-4-12 hex digits (any version; not the nil UUID). */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** parseUuid validates --uuid and returns it in lower case. */
export function parseUuid(text: string): string {
  const u = text.trim().toLowerCase();
  if (!UUID_RE.test(u))
    throw new InvalidInputError(
      `--uuid ${JSON.stringify(text)} is not a UUID`,
      'give 32 hex digits as 8-4-4-4-12, e.g. 0f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b',
    );
  if (/^[0-]+$/.test(u)) throw new InvalidInputError('--uuid cannot be the nil UUID');
  return u;
}

/**
 * sourceDateEpoch reads SOURCE_DATE_EPOCH (whole seconds since 1970) from `env`; undefined when unset or empty.
 * A value that is not a non-negative integer below 2^32 is refused (ext4 and FAT could not store it anyway).
 */
export function sourceDateEpoch(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v.trim() === '') return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) >= 2 ** 32)
    throw new InvalidInputError(`SOURCE_DATE_EPOCH=${JSON.stringify(v)} is not a number of seconds since 1970`);
  return Number(v);
}

/** DiskIdentity: the seed and, when reproducible, the time everything is clamped to. */
export interface DiskIdentity {
  /** SOURCE_DATE_EPOCH: times are clamped to it; undefined: a random seed and times as they are */
  time?: number;
  seed: Buffer;
  /** the ext4 UUID (--uuid, else derived) */
  rootUuid: string;
}

/** diskIdentity makes the identity of one export: derived from `imageDigest` and `options` when `time` is set. */
export function diskIdentity(opts: {
  imageDigest: string;
  options: Record<string, unknown>;
  time?: number | undefined;
  uuid?: string | undefined;
}): DiskIdentity {
  const seed =
    opts.time === undefined
      ? randomBytes(32)
      : createHash('sha256')
          .update(`${IDENTITY_DOMAIN}\0${opts.imageDigest}\0${canonicalJson({ ...opts.options, uuid: opts.uuid })}`)
          .digest();
  const id: DiskIdentity = { seed, rootUuid: opts.uuid ?? derivedUuid(seed, 'root-uuid') };
  if (opts.time !== undefined) id.time = opts.time;
  return id;
}

/** derive is id(label): SHA-256(seed NUL label). */
export function derive(seed: Buffer, label: string): Buffer {
  return createHash('sha256').update(seed).update(`\0${label}`).digest();
}

/** derivedUuid is the v4-shaped UUID of `label`. */
export function derivedUuid(seed: Buffer, label: string): string {
  const b = derive(seed, label).subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x40;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** derivedSerial is the non-zero 32-bit number of `label`. */
export function derivedSerial(seed: Buffer, label: string): number {
  const n = derive(seed, label).readUInt32BE(0);
  return n === 0 ? 1 : n;
}

/** canonicalJson: JSON with object keys sorted and undefined members left out, so equal options hash equally. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

/** diskOptions picks the options that change the disk's contents (the root password only as its SHA-256). */
export function diskOptions(o: {
  boot?: string;
  bootloader?: string;
  partition?: string | undefined;
  size?: string | undefined;
  kernel?: unknown;
  cmdline?: string | undefined;
  hostname?: string | undefined;
  network?: string;
  service?: string;
  rootPassword?: string | undefined;
  sshKeys?: string[] | undefined;
}): Record<string, unknown> {
  return {
    boot: o.boot,
    bootloader: o.bootloader,
    partition: o.partition,
    size: o.size ?? 'auto',
    kernel: o.kernel,
    cmdline: o.cmdline,
    hostname: o.hostname,
    network: o.network,
    service: o.service,
    rootPassword: o.rootPassword === undefined ? undefined : createHash('sha256').update(o.rootPassword).digest('hex'),
    sshKeys: o.sshKeys?.length ? o.sshKeys : undefined,
  };
}

/** applyDiskIds gives a planned table its ids: the MBR signature, or the GPT disk GUID and each partition's GUID. */
export function applyDiskIds(
  layout: {
    table: string;
    diskGuid?: string;
    diskSignature?: number;
    partitions: Array<{ index: number; uuid?: string }>;
  },
  seed: Buffer,
): void {
  if (layout.table === 'gpt') {
    layout.diskGuid = derivedUuid(seed, 'gpt-disk-guid');
    for (const p of layout.partitions) p.uuid = derivedUuid(seed, `gpt-partition-${p.index}`);
  } else layout.diskSignature = derivedSerial(seed, 'mbr-signature');
}

/** passwordSalt is the 16-character crypt salt of the root password hash (a reproducible export only). */
export function passwordSalt(seed: Buffer): string {
  const abc = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
  return [...derive(seed, 'password-salt').subarray(0, 16)].map((b) => abc[b & 63]).join('');
}
