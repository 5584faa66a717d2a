// `tsbuild export`: an image becomes a bootable disk. The recipe is the list of named steps below, run in order over
// one context; whatever a step leaves behind is cleaned up in one place (the work directory in the store's tmp and
// the raw disk's in memory, removed whether the export succeeded, failed or was interrupted). The output appears
// only when everything worked: it is made in the work directory and moved over the destination at the end.
//
//   flatten → distro → kernel → system files → service → bootloader config → layout → filesystem → owners
//     → bootloader → partition table → output
import { join, resolve } from 'node:path';
import { TsbuildError } from '../sys/errors.js';
import { imageLayers } from '../layers/model/layer.js';
import { getImage, type Image } from '../layers/store/image.js';
import type { Store } from '../layers/store/store.js';
import { defaultHost, type Host } from '../sys/host.js';
import { flatten as flattenLayers } from '../unionfs/flatten.js';
import { cleanStaleContainers } from '../unionfs/rootfs.js';
import { bootloadersFor, resolveBootloader, type Bootloader, type BootloaderContext } from './bootloader/index.js';
import { mbrCodePath } from './bootloader/extlinux.js';
import { which } from '../sys/exec.js';
import { defaultTable, parseSize, planDisk, type DiskPlan, type TableType } from './disk-layout.js';
import { detectDistro, UnsupportedDistroError, type Distro } from './distro.js';
import { autoFsBytes, FilesystemFullError, makeExt4, measureTree, minFsBytes, type TreeUsage } from './ext4.js';
import {
  checkOutputDir,
  convertDisk,
  outputFormat,
  placeOutput,
  writeRootfsTar,
  type OutputFormat,
} from './formats.js';
import {
  applyDiskIds,
  derivedSerial,
  derivedUuid,
  diskIdentity,
  diskOptions,
  parseUuid,
  passwordSalt,
  sourceDateEpoch,
  type DiskIdentity,
} from './identity.js';
import { clampTree, fixExt4Ctimes } from './reproducible.js';
import { checkTools, ExportInterruptedError, kernelCmdline, sizeTooSmall } from './recipe-helpers.js';
import { provideKernel, type KernelResult } from './kernel/index.js';
import { fixOwnership, makeTreeReadable, ownersFromLayers, ownershipCommands, type OwnerMap } from './owners.js';
import { writePartitionTable } from './partition.js';
import { detectInit, installService, serviceSpec, type InitSystem, type ServiceSpec } from './service.js';
import { hashPassword, hostnameFor, writeSystemFiles } from './system-files.js';
import { cleanStaleExports, makeRawDisk, makeWorkDir, removeTree, scratchMode } from './work-dir.js';

export { hostnameFor } from './system-files.js';
export { ExportInterruptedError, kernelCmdline } from './recipe-helpers.js';
export { cleanStaleExports } from './work-dir.js';
export type { ExportEvent, ExportOptions, ExportResult, StepName } from './options.js';
import type { ExportOptions, ExportResult, StepName } from './options.js';

/** Ctx is what the steps share. Fields are filled in as the steps run. */
interface Ctx {
  opts: Required<Pick<ExportOptions, 'boot' | 'bootloader' | 'network' | 'service' | 'kernel'>> & ExportOptions;
  store: Store;
  host: Host;
  format: OutputFormat;
  table: TableType;
  loaders: Bootloader[];
  root: boolean;
  work: string;
  rootfs: string;
  rootUuid: string;
  id?: DiskIdentity;
  hostname: string;
  image?: Image;
  distro?: Distro;
  init?: InitSystem | undefined;
  kernel?: KernelResult;
  cmdline: string;
  usage?: TreeUsage;
  plan?: DiskPlan;
  raw: string;
  memoryDir?: string; // the directory in memory holding `raw`, when it is there (work-dir.ts)
  owners?: OwnerMap;
  service?: ServiceSpec;
  serviceSkipped?: string;
  bootCode?: Buffer;
  bytes: number;
  step: StepName;
  emit(message: string): void;
  log(line: string): void;
  warn(code: string, message: string): void;
}

interface Step {
  name: StepName;
  /** skipped when this says false */
  when?: (c: Ctx) => boolean;
  run: (c: Ctx) => Promise<void>;
}

const disk = (c: Ctx): boolean => c.format !== 'tar';

/** STEPS is the recipe, in order. */
export const STEPS: readonly Step[] = [
  { name: 'check', run: checkHost },
  { name: 'flatten', run: flatten },
  { name: 'distro', run: distro },
  { name: 'kernel', run: kernel },
  { name: 'system-files', run: systemFiles },
  { name: 'service', run: service },
  { name: 'bootloader-config', when: disk, run: bootloaderConfig },
  { name: 'layout', when: disk, run: layout },
  { name: 'filesystem', when: disk, run: filesystem },
  { name: 'owners', when: (c) => disk(c) && !c.root, run: owners },
  { name: 'bootloader', when: disk, run: bootloader },
  { name: 'partition-table', when: disk, run: partitionTable },
  { name: 'output', run: output },
];

/** DRY_RUN_STEPS run in a dry run; the others are listed as what would follow. */
const DRY_RUN_STEPS: readonly StepName[] = ['check', 'flatten', 'distro', 'kernel'];

/**
 * exportImage runs the recipe and returns what it made. On any failure (or when `signal` aborts) the work
 * directory is removed and nothing is written at `output`; an interrupted export throws ExportInterruptedError.
 */
export async function exportImage(options: ExportOptions): Promise<ExportResult> {
  const ctx = await newContext(options);
  const timings: ExportResult['timings'] = {};
  const skippedInDryRun: StepName[] = [];
  try {
    for (const step of STEPS) {
      if (step.when && !step.when(ctx)) continue;
      if (options.dryRun && !DRY_RUN_STEPS.includes(step.name)) {
        skippedInDryRun.push(step.name);
        continue;
      }
      options.signal?.throwIfAborted();
      ctx.step = step.name;
      const t0 = Date.now();
      await step.run(ctx);
      timings[step.name] = (Date.now() - t0) / 1000;
    }
    options.signal?.throwIfAborted();
  } catch (err) {
    await removeWork(ctx).catch(() => {}); // the export's own error is the one to report
    if (options.signal?.aborted || (err as Error).name === 'AbortError')
      throw new ExportInterruptedError(options.output, err);
    throw err;
  }
  await removeWork(ctx);
  const result: ExportResult = {
    output: ctx.opts.output,
    format: ctx.format,
    bytes: ctx.bytes,
    diskSize: ctx.plan?.layout.diskSize ?? 0,
    rootUuid: ctx.rootUuid,
    kernel: ctx.kernel ?? { source: 'planned' },
    cmdline: ctx.cmdline,
    timings,
  };
  if (ctx.distro) result.distro = ctx.distro;
  if (ctx.init) result.init = ctx.init;
  if (ctx.plan) result.layout = ctx.plan;
  if (ctx.service) result.service = ctx.service;
  if (ctx.serviceSkipped) result.serviceSkipped = ctx.serviceSkipped;
  if (options.dryRun)
    result.dryRun = { steps: [...DRY_RUN_STEPS, ...skippedInDryRun], commands: ctx.kernel?.plan?.commands ?? [] };
  return result;
}

/** removeWork removes the work directory and the memory directory of the raw disk. */
const removeWork = (c: Ctx): Promise<unknown> =>
  Promise.all([removeTree(c.work), c.memoryDir && removeTree(c.memoryDir)]);

async function newContext(o: ExportOptions): Promise<Ctx> {
  const opts = {
    ...o,
    output: resolve(o.output),
    boot: o.boot ?? 'bios',
    bootloader: o.bootloader ?? 'auto',
    network: o.network ?? 'dhcp',
    service: o.service ?? 'auto',
    kernel: o.kernel ?? 'auto',
  } satisfies Ctx['opts'];
  if (opts.network !== 'dhcp' && opts.network !== 'none')
    throw new TsbuildError('E_INVALID', `--network must be dhcp or none (got ${JSON.stringify(opts.network)})`);
  if (opts.service !== 'auto' && opts.service !== 'none')
    throw new TsbuildError('E_INVALID', `--service must be auto or none (got ${JSON.stringify(opts.service)})`);
  if (opts.partition !== undefined && opts.partition !== 'mbr' && opts.partition !== 'gpt') {
    throw new TsbuildError('E_INVALID', `--partition must be mbr or gpt (got ${JSON.stringify(opts.partition)})`);
  }
  const format = outputFormat(opts.output, opts.format);
  await checkOutputDir(opts.output);
  sourceDateEpoch(); // fail early on a bad SOURCE_DATE_EPOCH or TSBUILD_EXPORT_SCRATCH
  scratchMode();
  if (opts.uuid !== undefined) opts.uuid = parseUuid(opts.uuid);
  const host = o.host ?? defaultHost();
  opts.bootloader = resolveBootloader(
    opts.bootloader,
    { boot: opts.boot, table: opts.partition ?? defaultTable(opts.boot) },
    {
      root: host.caps().root,
      hasExtlinux:
        which('extlinux') !== undefined && mbrCodePath(opts.partition ?? defaultTable(opts.boot)) !== undefined,
    },
  );
  const loaders = format === 'tar' ? [] : bootloadersFor(opts.boot, opts.bootloader);
  parseSize(opts.size ?? 'auto'); // fail early on a bad --size
  await cleanStaleExports(o.store.root);
  await cleanStaleContainers(o.store.root).catch(() => []);
  const work = await makeWorkDir(o.store.root);
  const ctx: Ctx = {
    opts,
    store: o.store,
    host,
    format,
    table: opts.partition ?? defaultTable(opts.boot),
    loaders,
    root: host.caps().root,
    work,
    rootfs: join(work, 'rootfs'),
    raw: join(work, 'disk.raw'),
    rootUuid: '',
    hostname: opts.hostname ?? '',
    cmdline: '',
    bytes: 0,
    step: 'check',
    emit: (message) => o.onEvent?.({ type: 'step', step: ctx.step, message }),
    log: (line) => o.onEvent?.({ type: 'log', step: ctx.step, line }),
    warn: (code, message) => o.onEvent?.({ type: 'warn', code, message }),
  };
  return ctx;
}

// ─── the steps ──────────────────────────────────────────────────────────────────────────────────────────────────

/** checkHost reports every missing host tool (and bootloader file) at once, before any work. */
async function checkHost(c: Ctx): Promise<void> {
  checkTools({
    format: c.format,
    loaders: c.loaders,
    root: c.root,
    password: c.opts.rootPassword !== undefined,
    dryRun: c.opts.dryRun === true,
  });
  c.emit(
    `${c.opts.image} → ${c.opts.output} (${c.format}${disk(c) ? `, ${c.opts.boot}, ${c.table}, ${c.loaders.map((l) => l.id).join('+')}` : ''})`,
  );
}

/** flatten writes the image's rootfs (all layers, whiteouts resolved) into the staging tree. */
async function flatten(c: Ctx): Promise<void> {
  const img = await getImage(c.store, c.opts.image);
  c.image = img;
  c.id = diskIdentity({
    imageDigest: img.descriptor.digest,
    options: { ...diskOptions(c.opts), name: img.name ?? c.opts.image }, // the name: default hostname, menu title
    time: sourceDateEpoch(),
    uuid: c.opts.uuid,
  });
  c.rootUuid = c.id.rootUuid;
  const how = await flattenLayers({
    store: c.store,
    host: c.host,
    layers: imageLayers(img),
    dir: c.rootfs,
    onWarn: (code, message) => (code === 'device-skipped' ? undefined : c.warn(code, message)),
  });
  if (!c.hostname) c.hostname = hostnameFor(img.name ?? c.opts.image);
  c.emit(
    `flattened ${img.manifest.layers.length} layer(s) of ${img.name ?? img.descriptor.digest} (${how === 'snapshots' ? 'from the layer snapshots' : 'extracted'})`,
  );
}

/** distro reads /etc/os-release; an unsupported one is an error unless the kernel comes from --kernel PATH or the image. */
async function distro(c: Ctx): Promise<void> {
  try {
    c.distro = detectDistro(c.rootfs);
    c.emit(`${c.distro.prettyName} (${c.distro.id})`);
  } catch (err) {
    if (!(err instanceof UnsupportedDistroError) || c.opts.kernel === 'auto' || c.opts.kernel === 'install') throw err;
    c.warn(
      'W_UNSUPPORTED_DISTRO',
      `${err.message}; using ${typeof c.opts.kernel === 'object' ? c.opts.kernel.path : "the image's kernel"} with generic settings`,
    );
  }
}

async function kernel(c: Ctx): Promise<void> {
  c.kernel = await provideKernel({
    store: c.store,
    host: c.host,
    rootfs: c.rootfs,
    layers: imageLayers(c.image as Image),
    ...(c.distro ? { distro: c.distro } : {}),
    mode: c.opts.kernel,
    network: c.opts.network,
    onEvent: (e) => (e.type === 'log' ? c.log(e.line) : c.emit(e.message)),
    ...(c.opts.signal ? { signal: c.opts.signal } : {}),
    dryRun: c.opts.dryRun === true,
  });
  const k = c.kernel;
  if (k.files)
    c.emit(
      `${k.files.kernel}${k.files.initrd ? ` + ${k.files.initrd}` : ''} (${k.source === 'cache' ? 'cached install' : k.source})`,
    );
  else if (k.plan) c.emit(`would install: ${k.plan.packages.join(' ')}`);
  c.init = detectInit(c.rootfs) ?? (c.distro?.family === 'alpine' ? 'openrc' : c.distro ? 'systemd' : undefined);
  c.cmdline = kernelCmdline(c.rootUuid, c.distro, c.opts.cmdline);
}

async function systemFiles(c: Ctx): Promise<void> {
  const salt = c.id?.time === undefined ? undefined : passwordSalt(c.id.seed);
  const hash = c.opts.rootPassword === undefined ? undefined : await hashPassword(c.opts.rootPassword, salt);
  const touched = await writeSystemFiles({
    rootfs: c.rootfs,
    host: c.host,
    ...(c.distro ? { distro: c.distro } : {}),
    ...(c.init ? { init: c.init } : {}),
    rootUuid: c.rootUuid,
    hostname: c.hostname,
    network: c.opts.network,
    ...(hash ? { rootPasswordHash: hash } : {}),
    ...(c.opts.sshKeys?.length ? { sshKeys: c.opts.sshKeys } : {}),
    onWarn: c.warn,
  });
  c.emit(`wrote ${touched.length} system files (hostname ${c.hostname}, root UUID ${c.rootUuid})`);
}

async function service(c: Ctx): Promise<void> {
  if (c.opts.service === 'none') {
    c.serviceSkipped = '--service none';
    return;
  }
  const spec = serviceSpec(c.image?.config.config ?? {}, c.rootfs);
  if ('skip' in spec) {
    c.serviceSkipped = spec.skip;
    c.emit(`no service: ${spec.skip}`);
    return;
  }
  if (!c.init) {
    c.serviceSkipped = 'the image has neither systemd nor OpenRC';
    c.warn('W_NO_INIT', `the app is not started at boot: ${c.serviceSkipped}`);
    return;
  }
  await installService(c.rootfs, spec, c.init);
  c.service = spec;
  c.emit(`${c.init} service ${spec.name}: ${spec.argv.join(' ')}`);
}

function bootContext(c: Ctx): BootloaderContext {
  if (!c.kernel?.files) throw new TsbuildError('E_INTERNAL', 'no kernel');
  return {
    rootfs: c.rootfs,
    host: c.host,
    image: c.raw,
    plan: c.plan as DiskPlan,
    rootUuid: c.rootUuid,
    kernel: c.kernel.files,
    cmdline: c.cmdline,
    workDir: c.work,
    title: c.image?.name ?? c.opts.image,
    espSerial: derivedSerial((c.id as DiskIdentity).seed, 'esp-serial'),
    ...(c.id?.time === undefined ? {} : { time: c.id.time }),
    ...(c.opts.signal ? { signal: c.opts.signal } : {}),
  };
}

async function bootloaderConfig(c: Ctx): Promise<void> {
  for (const l of c.loaders) await l.prepare(bootContext(c));
  c.emit(`configured ${c.loaders.map((l) => l.id).join(' + ')}`);
}

/** layout measures the tree and plans the disk: partitions, sizes; then makes the sparse raw file. */
async function layout(c: Ctx): Promise<void> {
  c.usage = await measureTree(c.rootfs);
  c.plan = planDisk({
    boot: c.opts.boot,
    table: c.table,
    grubBios: c.loaders.some((l) => l.id === 'grub-bios'),
    size: parseSize(c.opts.size ?? 'auto'),
    minRootBytes: minFsBytes(c.usage),
    autoRootBytes: autoFsBytes(c.usage),
  });
  applyDiskIds(c.plan.layout, (c.id as DiskIdentity).seed);
  // the raw disk is scratch unless it is the output, so it may be made in memory (work-dir.ts)
  Object.assign(c, await makeRawDisk(c.work, c.plan.layout.diskSize, { onDisk: c.format === 'raw' }));
  const mib = (n: number): string => `${Math.round(n / (1 << 20))} MiB`;
  c.emit(
    `${mib(c.usage.bytes)} in ${c.usage.inodes} files → ${mib(c.plan.layout.diskSize)} disk${c.memoryDir ? ' (made in memory)' : ''}: ${c.plan.layout.partitions.map((p) => `${p.name ?? p.type} ${mib(p.size)}`).join(', ')}`,
  );
}

async function filesystem(c: Ctx): Promise<void> {
  const plan = c.plan as DiskPlan;
  if (!c.root) {
    const n = await makeTreeReadable(c.rootfs);
    if (n) c.emit(`made ${n} unreadable paths readable for mkfs (their modes are restored in the filesystem)`);
  }
  const time = c.id?.time;
  if (time !== undefined) c.emit(`clamped the times of ${await clampTree(c.rootfs, time)} paths to ${time}`);
  const mkfs = (): Promise<void> =>
    makeExt4({
      image: c.raw,
      offset: plan.root.start,
      bytes: plan.root.size,
      dir: c.rootfs,
      uuid: c.rootUuid,
      hashSeed: derivedUuid((c.id as DiskIdentity).seed, 'ext4-hash-seed'),
      ...(time === undefined ? {} : { time }),
      label: 'root',
      usage: c.usage as TreeUsage,
      ...(c.opts.signal ? { signal: c.opts.signal } : {}),
    });
  try {
    await mkfs().catch(async (err: unknown) => {
      if (!(err instanceof FilesystemFullError) || !c.memoryDir) throw err; // the memory filled up, or the partition
      c.emit(`out of space with the raw disk in ${c.memoryDir}; again in the store`);
      await removeTree(c.memoryDir);
      delete c.memoryDir;
      Object.assign(c, await makeRawDisk(c.work, plan.layout.diskSize, { onDisk: true }));
      if (time !== undefined) await clampTree(c.rootfs, time); // the reads moved the access times
      await mkfs();
    });
  } catch (err) {
    throw err instanceof FilesystemFullError ? sizeTooSmall(err, plan.root.size, c.usage as TreeUsage) : err;
  }
  const sig = c.opts.signal ? { signal: c.opts.signal } : {};
  if (time !== undefined) await fixExt4Ctimes({ image: c.raw, offset: plan.root.start, time, workDir: c.work, ...sig });
  c.emit(`ext4 ${c.rootUuid} at byte ${plan.root.start} (${Math.round(plan.root.size / (1 << 20))} MiB)`);
}

/** owners (unprivileged only): give files the owners and modes the image says, and make the device nodes. */
async function owners(c: Ctx): Promise<void> {
  const img = c.image as Image;
  const layers = [...img.manifest.layers, ...(c.kernel?.layer ? [c.kernel.layer.descriptor] : [])];
  c.owners = await ownersFromLayers(c.store, layers);
  const { commands, skipped } = await ownershipCommands(c.rootfs, c.owners);
  for (const p of skipped)
    c.warn('W_OWNER_SKIPPED', `/${p}: its name cannot be passed to debugfs; it keeps the exporting user's owner`);
  const plan = c.plan as DiskPlan;
  await fixOwnership({
    image: c.raw,
    offset: plan.root.start,
    commands,
    workDir: c.work,
    ...(c.id?.time === undefined ? {} : { time: c.id.time }),
    ...(c.opts.signal ? { signal: c.opts.signal } : {}),
  });
  c.emit(`set owners from the image layers (${commands.length} debugfs commands)`);
}

async function bootloader(c: Ctx): Promise<void> {
  for (const l of c.loaders) {
    const r = await l.install(bootContext(c));
    if (r.bootCode) c.bootCode = r.bootCode;
  }
  c.emit(`installed ${c.loaders.map((l) => l.id).join(' + ')}`);
}

async function partitionTable(c: Ctx): Promise<void> {
  const plan = c.plan as DiskPlan;
  await writePartitionTable(c.raw, plan.layout, c.bootCode ? { bootCode: c.bootCode } : {});
  c.emit(`${plan.layout.table.toUpperCase()} with ${plan.layout.partitions.length} partition(s)`);
}

async function output(c: Ctx): Promise<void> {
  let file: string;
  if (c.format === 'tar') {
    if (!c.root && !c.owners) {
      const img = c.image as Image;
      c.owners = await ownersFromLayers(c.store, [
        ...img.manifest.layers,
        ...(c.kernel?.layer ? [c.kernel.layer.descriptor] : []),
      ]);
    }
    file = join(c.work, 'rootfs.tar');
    await writeRootfsTar({
      rootfs: c.rootfs,
      file,
      ...(c.root ? {} : { owners: c.owners as OwnerMap }),
      ...(c.opts.signal ? { signal: c.opts.signal } : {}),
    });
  } else {
    // nothing reads the staging tree (hard links) any more: remove it during the conversion, not after
    const tree = removeTree(c.rootfs).catch(() => {});
    file = await convertDisk({
      raw: c.raw,
      format: c.format,
      workDir: c.work,
      ...(c.opts.compress === undefined ? {} : { compress: c.opts.compress }),
      bootFiles: {
        offset: (c.plan as DiskPlan).root.start,
        paths: [c.kernel?.files?.kernel, c.kernel?.files?.initrd].filter((p): p is string => !!p),
      },
      ...(c.id?.time === undefined ? {} : { vmdkCid: derivedSerial(c.id.seed, 'vmdk-cid') }),
      ...(c.opts.signal ? { signal: c.opts.signal } : {}),
    }).finally(() => tree);
  }
  c.opts.signal?.throwIfAborted();
  c.bytes = await placeOutput(file, c.opts.output);
  c.emit(`${c.opts.output}: ${c.bytes} bytes`);
}
