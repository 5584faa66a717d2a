import { InvalidInputError } from '../../sys/errors.js';
import { pullImage } from '../../layers/registry/pull.js';
import type { Platform } from '../../layers/model/types.js';
import { type GlobalFlags, openStore, out, unpackEntered } from '../common.js';
import { type RemoteFlags, remoteOptions, transferDisplay } from './push.js';

export default async function pull(
  ref: string,
  flags: GlobalFlags & RemoteFlags & { platform?: string },
): Promise<void> {
  const store = await openStore(flags);
  const display = transferDisplay('pull');
  try {
    const r = await pullImage(store, ref, {
      ...remoteOptions(flags),
      platform: platformFlag(flags.platform),
      onEvent: display.onEvent,
    });
    display.finish();
    display.log(`pulled ${r.name}`);
    await unpackEntered(store, [r.descriptor.digest]);
    out(r.descriptor.digest);
  } finally {
    display.finish();
  }
}

/** platformFlag parses --platform os/arch[/variant]. */
export function platformFlag(v: unknown): Platform {
  const s = String(v ?? 'linux/amd64');
  const parts = s.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/i.test(p))) {
    throw new InvalidInputError(`--platform must be os/arch[/variant] (got ${JSON.stringify(s)})`);
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined];
  return variant ? { os, architecture, variant } : { os, architecture };
}
