// The tsbuild command table. Each action lazily imports its command module, so `tsbuild --version` stays fast.
import { readFileSync } from 'node:fs';
import sade from 'sade';
import { commandTable, FlagError, mriTypes, parseCommandLine, type ParsedLine } from './flags.js';
import { report } from './report.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

type Action = (...args: unknown[]) => Promise<void>;
/** lazy wires a command to `./commands/<name>.js`, loaded only when that command runs. */
const lazy =
  (name: string): Action =>
  async (...args: unknown[]) => {
    const mod = (await import(`./commands/${name}.js`)) as { default: Action };
    await mod.default(...args);
  };

const prog = sade('tsbuild')
  .version(pkg.version)
  .option('--root', 'Store directory (default: $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild)')
  .option('--debug', 'Print stack traces with errors', false);

prog
  .command('build [context]', 'Build an image from a Dockerfile (the default command)', { default: true })
  .option('-f, --file', 'Dockerfile path (default: CONTEXT/Dockerfile; - reads it from stdin)')
  .option('-t, --tag', 'Name the image NAME:TAG; repeatable')
  .option('--build-arg', 'Set a build argument K=V (or K to take it from the environment); repeatable')
  .option('--target', 'Build up to this stage')
  .option('--build-context', 'Add a named context NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG]; repeatable')
  .option('--no-cache', 'Do not use the build cache')
  .option('--pull', 'Pull base images even when the store has them', false)
  .option('--secret', 'Expose a secret to RUN --mount=type=secret: id=ID,src=PATH or id=ID,env=VAR; repeatable')
  .option('--network', 'Network for RUN steps: default (own, outbound via slirp4netns), none or host', 'default')
  .option('--allow', 'Grant an entitlement: network.host (root has it), security.insecure; repeatable')
  .option('--ssh', 'Forward an SSH agent to RUN --mount=type=ssh: default|ID[=SOCKET|KEY[,KEY…]]; repeatable')
  .option('--shm-size', 'Size of /dev/shm in RUN steps (e.g. 128m; default 64m)')
  .option('--platform', 'Target platform (only linux/amd64 is built here)', 'linux/amd64')
  .option('--compression', 'Layers in the store: none (compressed when pushed), gzip or zstd', 'none')
  .option('--progress', 'auto, plain, tty or quiet', 'auto')
  .option('--iidfile', 'Write the image digest to this file')
  .option('--metadata-file', 'Write build metadata (JSON) to this file')
  .option('--squash', 'Squash the new layers into one', false)
  .option('--label', 'Set a label K=V on the image (over LABEL); repeatable')
  .option('--add-host', 'Add NAME:IP to the /etc/hosts RUN steps see (IP may be host-gateway); repeatable')
  .option(
    '-o, --output',
    'Also write the result: DIR, -, or type=local|tar|oci|docker,dest=PATH[,compression=gzip|zstd|uncompressed]',
  )
  .option('-q, --quiet', 'Print only the image digest, no progress', false)
  .option('-m, --memory', 'Memory limit of each RUN step, e.g. 2g (default: 3/4 of the memory)')
  .option('--pids-limit', 'Maximum number of tasks of each RUN step (default 8192)')
  .option('--ulimit', 'Resource limit of RUN steps NAME=SOFT[:HARD] (nofile, nproc, core, …); repeatable')
  .option('--cache-from', 'Shared cache to read: type=registry,ref=REF, type=local,src=DIR, or REF; repeatable')
  .option('--cache-to', 'Export the cache: type=registry,ref=REF[,mode=min|max] or type=local,dest=DIR; repeatable')
  .action(lazy('build'));

prog
  .command('images [repository]')
  .describe('List images in the store; REPOSITORY[:TAG] lists only those')
  .option('--format', 'table or json', 'table')
  .option('-q, --quiet', 'Print only image digests', false)
  .action(lazy('images'));

prog
  .command('inspect <name>')
  .describe('Show images as a JSON array (digest, manifest, config), one element per NAME given')
  .action(lazy('inspect'));

prog
  .command('history <name>')
  .describe("Show an image's history")
  .option('--no-trunc', 'Do not truncate output')
  .option('-q, --quiet', 'Print only the layer digests', false)
  .option('--format', 'table or json', 'table')
  .action(lazy('history'));

prog.command('tag <source> <target>').describe('Give an image another name').action(lazy('tag'));

prog
  .command('rm <name>')
  .alias('rmi')
  .describe('Remove image names (blobs go with `tsbuild prune`)')
  .action(lazy('rm'));

prog
  .command('prune')
  .describe(
    "Remove what nothing needs (blobs no image or cache names, dead processes' mounts and work directories); print what went, the bytes freed and what was kept",
  )
  .option('-a, --all', 'Also remove untagged images and the caches (build cache, export kernel cache)', false)
  .option(
    '--filter',
    'until=TIME: with --all, remove only what was made or last used before TIME (24h, 2024-05-01, a Unix time)',
  )
  .option('-f, --force', 'Accepted for docker compatibility: prune never prompts, so it changes nothing', false)
  .action(lazy('prune'));

prog.command('unpack <name> <dir>').describe("Write the image's flattened rootfs to DIR").action(lazy('unpack'));

prog
  .command('import <source> [name]')
  .describe('Create an image from a rootfs tarball (plain, gzip, zstd, bzip2, xz), a directory, or - for stdin')
  .option('-c, --change', 'Apply a Dockerfile instruction to the config (CMD, ENTRYPOINT, ENV, …); repeatable')
  .option('-m, --message', 'Set the history comment')
  .option('--compression', 'Layer compression: gzip, zstd or none', 'gzip')
  .action(lazy('import'));

prog
  .command('save <name>')
  .describe('Write images to a tar archive (an OCI layout that `docker load` also reads)')
  .option('-o, --output', 'Archive file (default: stdout when it is not a terminal)')
  .action(lazy('save'));

prog
  .command('load')
  .describe('Load images from an OCI archive or a `docker save` archive')
  .option('-i, --input', 'Archive file (default: stdin)')
  .option('--compression', 'Compression for uncompressed layers: gzip, zstd or none', 'gzip')
  .action(lazy('load'));

prog
  .command('bootstrap <distro>')
  .describe('Create a base image from the distribution archive: debian:bookworm, alpine:3.20, …')
  .option('--variant', 'mmdebstrap variant for Debian', 'minbase')
  .option('--include', 'Extra packages, comma separated')
  .option('--mirror', 'Mirror URL')
  .option('-t, --tag', 'Name for the image (default: the distro name)')
  .option('--compression', 'Layer compression: gzip, zstd or none', 'gzip')
  .action(lazy('bootstrap'));

prog
  .command('run <image>')
  .describe('Run a command in a new container of the image: tsbuild run [OPTIONS] IMAGE [COMMAND] [ARG…]')
  .option('--rm', 'Discard the writable layer when the command exits', false)
  .option('-i, --interactive', 'Keep stdin open', false)
  .option('-t, --tty', 'Allocate a terminal', false)
  .option('-e, --env', 'Set K=V (or pass K from this environment); repeatable')
  .option('-w, --workdir', 'Working directory in the container')
  .option('-u, --user', 'name|uid[:group|gid]')
  .option('-v, --volume', 'Bind mount HOST:CONTAINER[:ro]; repeatable')
  .option('--network', 'none (only loopback), default|bridge (own, outbound via slirp4netns) or host', 'none')
  .option('--hostname', 'Container hostname')
  .option('--memory', 'Memory limit, e.g. 64m')
  .option('--pids-limit', 'Maximum number of processes')
  .option('--cpus', 'CPUs worth of time, e.g. 1.5')
  .option('--entrypoint', 'Replace the image ENTRYPOINT')
  .option('--init', 'Run an init as PID 1 that reaps zombies and forwards signals', false)
  .option('--read-only', 'Mount the rootfs read-only', false)
  .option('--cap-add', 'Add a capability; repeatable')
  .option('--cap-drop', 'Drop a capability; repeatable')
  .option('--storage-driver', 'overlay or vfs (userspace fallback); default: overlay as root')
  .option('--security-opt', 'seccomp=unconfined, seccomp=PROFILE.json (docker format) or no-new-privileges; repeatable')
  .option('--device', 'Give the container a host device: /dev/HOST[:/dev/CONTAINER][:rwm]; repeatable')
  .option('--ulimit', 'Set a resource limit NAME=SOFT[:HARD] (nofile, nproc, core, …; -1 = unlimited); repeatable')
  .action(lazy('run'));

prog
  .command('mount <image>')
  .describe('Make a writable merged view of the image and print its path')
  .option('--storage-driver', 'overlay or vfs')
  .action(lazy('mount'));

prog.command('umount <path>').describe('Remove a view made by `tsbuild mount`').action(lazy('umount'));

prog
  .command('unshare [command]')
  .describe(
    "Run COMMAND (default: $SHELL) in tsbuild's rootless user namespace: tsbuild unshare [COMMAND [ARG…]] (as buildah unshare)",
  )
  .action(lazy('unshare'));

prog
  .command('bundle <image> <dir>')
  .describe('Write an OCI runtime bundle (config.json + rootfs/) that runc runs')
  .option('-u, --user', 'name|uid[:group|gid]')
  .option('-e, --env', 'Set K=V; repeatable')
  .option('-w, --workdir', 'Working directory')
  .option('--network', 'none or host', 'none')
  .action(lazy('bundle'));

prog
  .command('push <name> [dest]')
  .describe('Push an image to a registry (dest defaults to the name)')
  .option('--insecure', 'Allow plain HTTP and unverified TLS to this registry', false)
  .option('--ca-cert', 'Extra CA certificate (PEM) to trust')
  .option('--jobs', 'Blobs uploaded in parallel', 3)
  .option('--chunk-size', 'Upload in PATCH chunks of this many bytes (default: one streamed PATCH)')
  .option(
    '--compression',
    'Uncompressed layers (a build keeps its layers so) are pushed as: gzip, zstd or none',
    'gzip',
  )
  .action(lazy('push'));

prog
  .command('pull <ref>')
  .describe('Pull an image from a registry into the store')
  .option('--platform', 'os/arch[/variant] to pick from an index', 'linux/amd64')
  .option('--insecure', 'Allow plain HTTP and unverified TLS to this registry', false)
  .option('--ca-cert', 'Extra CA certificate (PEM) to trust')
  .option('--jobs', 'Blobs downloaded in parallel', 3)
  .action(lazy('pull'));

prog
  .command('login <registry>')
  .describe('Save credentials for a registry (docker-compatible config.json)')
  .option('-u, --username', 'User name')
  .option('-p, --password', 'Password (prefer --password-stdin)')
  .option('--password-stdin', 'Read the password from stdin', false)
  .option('--insecure', 'Allow plain HTTP and unverified TLS to this registry', false)
  .option('--ca-cert', 'Extra CA certificate (PEM) to trust')
  .action(lazy('login'));

prog.command('logout <registry>').describe('Remove saved credentials for a registry').action(lazy('logout'));

prog
  .command('export <name>')
  .describe('Turn an image into a bootable disk: qcow2, raw, vmdk, vhdx (or its rootfs as tar)')
  .option('-o, --output', 'Output file; the format comes from its extension unless --format is given')
  .option('--format', 'qcow2, raw, vmdk, vhdx or tar')
  .option('--size', 'Disk size: auto, 10G, or +1G (auto plus headroom)', 'auto')
  .option('--partition', 'Partition table: mbr or gpt')
  .option('--boot', 'Firmware: bios, uefi or hybrid', 'bios')
  .option('--bootloader', 'auto (extlinux for a BIOS+MBR disk made as root, else GRUB), grub or extlinux', 'auto')
  .option('--kernel', 'auto, image (must be in the image), install, or a path to a kernel file', 'auto')
  .option('--initrd', 'Path to an initrd (with --kernel PATH)')
  .option('--cmdline', 'Extra kernel command line')
  .option('--hostname', 'Hostname of the VM')
  .option('--root-password-file', 'File holding the root password')
  .option('--ssh-key', 'Public key file for root; repeatable')
  .option('--network', 'dhcp or none', 'dhcp')
  .option('--service', 'auto (run the image ENTRYPOINT/CMD at boot) or none', 'auto')
  .option('--uuid', 'UUID of the root filesystem (default: derived with SOURCE_DATE_EPOCH, else random)')
  .option(
    '--compress',
    'qcow2 clusters: zstd (default; QEMU >= 5.1), deflate (older readers) or none; vmdk: streamOptimized unless none',
  )
  .action(lazy('export'));

prog
  .command('boot <file>')
  .describe('Boot a disk image in QEMU with the serial console on stdout; exit 0 when --expect matches')
  .option('--timeout', 'Seconds to wait', 300)
  .option('--expect', 'Regular expression to wait for (default: a login prompt)')
  .option('--memory', 'VM memory', '1G')
  .option('--kvm', 'auto, on or off', 'auto')
  .option('--kvm-watchdog', 'Seconds without serial output before --kvm auto restarts a KVM boot under TCG (0: never)')
  .option('--uefi', 'Boot with OVMF (UEFI)', false)
  .action(lazy('boot'));

// mri (sade's parser) reads a lone `-` as an empty flag; carry it through as a token and give it back.
const STDIN_TOKEN = '\u0000stdin';
const restore = (v: unknown): unknown =>
  v === STDIN_TOKEN
    ? '-'
    : Array.isArray(v)
      ? v.map(restore)
      : v && typeof v === 'object'
        ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, restore(x)]))
        : v;
const given = process.argv.slice(2).map((a) => (a === '-' ? STDIN_TOKEN : a));
const debug = (given.includes('--') ? given.slice(0, given.indexOf('--')) : given).includes('--debug');
// A reader that closes the pipe early (`tsbuild history x | head`) ends us quietly, as SIGPIPE ends a C tool (141).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(128 + 13);
});
// The command line is checked against the table above before sade reads it (cli/flags.ts): unknown flags and
// commands are errors, and `tsbuild run IMAGE ls -la` / `tsbuild bundle IMAGE DIR CMD…` get a `--` after their
// positionals, so that the container's command and its flags are not read as tsbuild's.
/** docker's flags that tsbuild does not implement: refused with the reason (a flag is never accepted and ignored). */
const UNSUPPORTED: Record<string, Record<string, string>> = {
  build: {
    push: 'is not supported: build with -t NAME, then `tsbuild push NAME`',
    load: 'is not needed: every image built is stored (see `tsbuild images`)',
    annotation: 'is not supported yet',
    attest: 'is not supported: tsbuild writes no attestations',
    provenance: 'is not supported: tsbuild writes no attestations',
    sbom: 'is not supported: tsbuild writes no attestations',
    builder: 'is not supported: tsbuild builds in this process',
    call: 'is not supported yet',
    check: 'is not supported yet',
    'no-cache-filter': 'is not supported yet: use --no-cache',
    'cgroup-parent': 'is not supported',
    'security-opt': 'is not supported: RUN steps are always sandboxed',
    isolation: 'is not supported',
    'cpu-shares': 'is not supported',
    'cpu-period': 'is not supported',
    'cpu-quota': 'is not supported',
    'cpuset-cpus': 'is not supported',
    'cpuset-mems': 'is not supported',
    'memory-swap': 'is not supported',
    'disable-content-trust': 'is not supported',
    'force-rm': 'is not supported: build containers are always removed',
    rm: 'is not supported: build containers are always removed',
    compress: 'is not supported: the context is read in place',
  },
};
const table = commandTable(prog);
let line: ParsedLine | undefined;
if (given.length === 0) prog.help();
else {
  try {
    line = parseCommandLine(table, given, {
      stdin: STDIN_TOKEN,
      argsAfter: { run: 1, bundle: 2, unshare: 1 },
      variadic: ['inspect', 'rm', 'save'],
      unsupported: UNSUPPORTED,
    });
  } catch (err) {
    const code = report(err, { debug });
    // `tsbuild run` reports its own failures with docker's 125, a bad flag included
    process.exitCode = err instanceof FlagError && err.command === 'run' ? 125 : code;
  }
}
const cmd = line && prog.parse(['', '', ...line.args], { lazy: true, ...mriTypes(table, line.command) });
if (cmd) {
  try {
    await cmd.handler(...cmd.args.map(restore));
  } catch (err) {
    const code = report(err, { debug });
    // `tsbuild run` reports its own failures with docker's 125; every other failure is 1 (or 70), as docker build
    // exits 1 when a RUN fails, whatever the step's own status (the message carries it)
    process.exitCode = line?.command === 'run' ? ((err as { exitCode?: number }).exitCode ?? code) : code;
  }
}
