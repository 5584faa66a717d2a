// Layer commit cost: tar a directory and compress it, tsbuild against pigz and the zstd CLI, in the same run.
// Run by hand: npx tsx bench/layer-commit.ts [DIR=/usr] [--runs N]   (DIR must hold at least 500 MB)
//
// tsbuild side: tarFromDirectory (layers/tar/create.ts) when that module is there, else `tar -cf - -C DIR .`, piped
// into compressStream. Peer side: `tar -cf - -C DIR . | pigz -6 | wc -c` and `… | zstd -3 -T0 | wc -c`. A tar-only
// pass of each source runs first (it warms the page cache and shows what the tar side costs). Prints a table and
// the tsbuild/peer ratios; never asserts timings.
import { execFileSync, spawn } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { compressStream, shutdownGzipPool } from '../layers/compress/compress.js';
import type { Compression } from '../layers/model/types.js';

const MIN_BYTES = 500 * 1000 * 1000;
const MiB = 1024 * 1024;

const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const RUNS = runsAt >= 0 ? Number(args.splice(runsAt, 2)[1]) : 1;
const DIR = args[0] ?? '/usr';

interface Sample {
  seconds: number;
  /** user + system CPU seconds of every thread and process involved */
  cpu: number;
  inBytes: number;
  outBytes: number;
}

interface Row extends Sample {
  what: string;
  who: 'tsbuild' | 'peer';
  command: string;
}

/** TarSource opens an uncompressed tar stream of a directory. */
interface TarSource {
  name: string;
  open(dir: string): Readable;
}

const cliTar: TarSource = {
  name: 'tar -cf - (GNU tar, piped in)',
  open(dir) {
    const child = spawn('tar', ['-cf', '-', '-C', dir, '.'], { stdio: ['ignore', 'pipe', 'ignore'] });
    return child.stdout;
  },
};

/** findTarSource uses layers/tar/create.ts when it exists (another module, maybe not written yet). */
async function findTarSource(warnings: Map<string, number>): Promise<TarSource> {
  const spec = '../layers/tar-create.js'; // a variable, so that type-checking does not require the module
  try {
    const mod = (await import(spec)) as {
      tarFromDirectory?: (dir: string, opts?: { onWarn?: (code: string, message: string) => void }) => Readable;
    };
    const tarFromDirectory = mod.tarFromDirectory;
    if (typeof tarFromDirectory === 'function') {
      return {
        name: 'tarFromDirectory (layers/tar/create.ts)',
        open: (dir) => tarFromDirectory(dir, { onWarn: (code) => warnings.set(code, (warnings.get(code) ?? 0) + 1) }),
      };
    }
  } catch {
    // not there yet
  }
  return cliTar;
}

function counter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

const sink = (onBytes: (n: number) => void): Writable =>
  new Writable({
    write(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb();
    },
  });

/** inProcess times source → [compressStream] → byte count. */
async function inProcess(source: TarSource, c: Compression | undefined): Promise<Sample> {
  let inBytes = 0;
  let outBytes = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const stages: (Readable | Transform | Writable)[] = [source.open(DIR), counter((n) => (inBytes += n))];
  if (c) stages.push(compressStream(c));
  stages.push(sink((n) => (outBytes += n)));
  await pipeline(stages);
  const cpu = process.cpuUsage(cpu0);
  const cpuTar = source === cliTar ? Number.NaN : 0; // a tar child's CPU is not counted: say so rather than under-count
  return { seconds: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6 + cpuTar, inBytes, outBytes };
}

/** shell times a `tar | filter | wc -c` pipeline under /usr/bin/time (for the CPU of the whole pipeline). */
function shell(script: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('/usr/bin/time', ['-f', 'CPU %U %S', 'sh', '-c', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = (performance.now() - t0) / 1000;
      const outBytes = Number(out.trim());
      const m = /CPU ([\d.]+) ([\d.]+)/.exec(err);
      if (code !== 0 || !Number.isFinite(outBytes) || !m)
        reject(new Error(`${script}: exit ${code}, output ${JSON.stringify(out)} ${err}`));
      else resolve({ seconds, cpu: Number(m[1]) + Number(m[2]), inBytes: outBytes, outBytes });
    });
  });
}

function median(samples: Sample[]): Sample {
  const sorted = [...samples].sort((a, b) => a.seconds - b.seconds);
  return sorted[Math.floor(sorted.length / 2)] as Sample;
}

function version(argv: string[]): string {
  try {
    return (
      execFileSync(argv[0] as string, argv.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
        .split('\n')[0]
        ?.trim() ?? '?'
    );
  } catch (e) {
    return `unavailable (${(e as Error).message.split('\n')[0]})`;
  }
}

async function main(): Promise<void> {
  const bytes = Number(
    execFileSync('du', ['-sb', DIR], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).split('\t')[0],
  );
  if (!(bytes >= MIN_BYTES)) {
    console.error(`${DIR} holds ${bytes} bytes; the benchmark needs a directory of at least ${MIN_BYTES / 1e6} MB`);
    process.exit(2);
  }
  const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
  const tarCmd = `tar -cf - -C ${q(DIR)} . 2>/dev/null`;
  const warnings = new Map<string, number>();
  let source = await findTarSource(warnings);

  console.log(`# layer commit: ${DIR} (${(bytes / 1e9).toFixed(2)} GB on disk), ${RUNS} run(s), median shown`);
  console.log(
    `node ${process.version}, ${availableParallelism()} CPUs; ${version(['pigz', '--version'])}; ${version(['zstd', '--version'])}`,
  );
  console.log(
    `load average at the start: ${loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  );

  // Tar-only passes: warm the page cache, and learn the uncompressed sizes.
  await shell(`${tarCmd} | wc -c`);
  const cliTarOnly = await shell(`${tarCmd} | wc -c`);
  let tsTarOnly: Sample;
  try {
    tsTarOnly = await inProcess(source, undefined);
  } catch (e) {
    console.log(`note: ${source.name} failed on ${DIR} (${(e as Error).message}); falling back to ${cliTar.name}`);
    source = cliTar;
    tsTarOnly = await inProcess(source, undefined);
  }
  console.log(`tsbuild tar source: ${source.name}`);

  const rows: Row[] = [
    { what: 'tar only', who: 'tsbuild', command: source.name, ...tsTarOnly },
    { what: 'tar only', who: 'peer', command: 'tar -cf - | wc -c', ...cliTarOnly },
  ];
  const cases: { c: Compression; peer: string; command: string }[] = [
    { c: 'gzip', peer: `${tarCmd} | pigz -6 | wc -c`, command: 'tar -cf - | pigz -6 | wc -c' },
    { c: 'zstd', peer: `${tarCmd} | zstd -3 -T0 -q | wc -c`, command: 'tar -cf - | zstd -3 -T0 | wc -c' },
  ];
  for (const { c, peer, command } of cases) {
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    for (let i = 0; i < RUNS; i++) {
      ours.push(await inProcess(source, c));
      theirs.push({ ...(await shell(peer)), inBytes: cliTarOnly.inBytes });
      console.error(
        `  ${c} run ${i + 1}: tsbuild ${(ours.at(-1) as Sample).seconds.toFixed(1)} s, peer ${(theirs.at(-1) as Sample).seconds.toFixed(1)} s`,
      );
    }
    rows.push({
      what: c,
      who: 'tsbuild',
      command: `${source.name === cliTar.name ? 'tar -cf - |' : 'tarFromDirectory |'} compressStream('${c}')`,
      ...median(ours),
    });
    rows.push({ what: c, who: 'peer', command, ...median(theirs) });
  }
  await shutdownGzipPool();

  console.log(
    '\n| case | side | command | wall s | CPU s | MiB/s (uncompressed, wall) | output MiB | output / input |',
  );
  console.log('|---|---|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.what} | ${r.who} | \`${r.command}\` | ${r.seconds.toFixed(1)} | ${r.cpu.toFixed(1)} | ${(r.inBytes / MiB / r.seconds).toFixed(1)} | ` +
        `${(r.outBytes / MiB).toFixed(1)} | ${(r.outBytes / r.inBytes).toFixed(3)} |`,
    );
  }
  console.log('\nratios, tsbuild / peer (below 1: tsbuild is faster or smaller; target: wall time within 1.2x):');
  for (const what of ['tar only', 'gzip', 'zstd']) {
    const ours = rows.find((r) => r.what === what && r.who === 'tsbuild') as Row;
    const theirs = rows.find((r) => r.what === what && r.who === 'peer') as Row;
    console.log(
      `  ${what.padEnd(8)} wall ${(ours.seconds / theirs.seconds).toFixed(2)}x   CPU ${(ours.cpu / theirs.cpu).toFixed(2)}x   ` +
        `output/input ${(ours.outBytes / ours.inBytes / (theirs.outBytes / theirs.inBytes)).toFixed(3)}x`,
    );
  }
  const load = loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  console.log(
    `load average at the end: ${load} (on ${availableParallelism()} CPUs; other work on the machine skews wall times)`,
  );
  const rss = process.resourceUsage().maxRSS / 1024;
  console.log(`\npeak RSS of this process (tar + compression, all threads): ${rss.toFixed(0)} MiB`);
  if (warnings.size) console.log(`tar warnings: ${[...warnings].map(([k, v]) => `${k}×${v}`).join(', ')}`);
}

await main();
