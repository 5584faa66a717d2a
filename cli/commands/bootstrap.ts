import { bootstrapImage, parseDistro } from '../../layers/sources/bootstrap.js';
import { type GlobalFlags, compressionFlag, openStore, out, unpackEntered, sourceDateEpoch } from '../common.js';
import { stderrProgress } from '../progress.js';

export default async function bootstrap(
  distro: string,
  flags: GlobalFlags & { variant?: string; include?: string; mirror?: string; tag?: string; compression?: string },
): Promise<void> {
  parseDistro(distro); // refuse an unknown distribution before touching the store
  const store = await openStore(flags);
  const p = stderrProgress();
  const sde = sourceDateEpoch();
  p.step(`bootstrapping ${distro}`);
  const r = await bootstrapImage(store, {
    distro,
    ...(flags.variant ? { variant: String(flags.variant) } : {}),
    ...(flags.include
      ? {
          include: String(flags.include)
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean),
        }
      : {}),
    ...(flags.mirror ? { mirror: String(flags.mirror) } : {}),
    ...(flags.tag ? { name: String(flags.tag) } : {}),
    compression: compressionFlag(flags.compression),
    ...(sde === undefined ? {} : { sourceDateEpoch: sde }),
    onLog: (line) => p.step(line),
  });
  p.step(`layer ${r.layer.descriptor.digest} (${r.layer.uncompressedSize} bytes uncompressed)`);
  await unpackEntered(store, [r.descriptor.digest]);
  out(`${r.name} ${r.descriptor.digest}`);
}
