// The image's ENTRYPOINT + CMD, Env, WorkingDir and User as a service the VM starts at boot: a systemd unit or an
// OpenRC script, with the program's output on the serial console (so that its lines show up on ttyS0).
import { existsSync, lstatSync } from 'node:fs';
import { chmod, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import { InvalidInputError } from '../sys/errors.js';
import type { ContainerConfig } from '../layers/model/types.js';
import { secureJoin } from '../sys/secure-path.js';
import { DEFAULT_PATH } from '../runtime/spec.js';

export type InitSystem = 'systemd' | 'openrc';

/** SERVICE_NAME is the unit / init script the app runs as: `systemctl status tsbuild-app`, `rc-service tsbuild-app status`. */
export const SERVICE_NAME = 'tsbuild-app';

/** ServiceSpec is the program to run at boot, in docker-run terms. */
export interface ServiceSpec {
  name: string;
  /** ENTRYPOINT + CMD, argv[0] resolved against the image's PATH when it is not absolute */
  argv: string[];
  /** KEY=value, PATH included */
  env: string[];
  /** absolute; '/' when the image sets none */
  workingDir: string;
  /** the image's USER split: user (name or uid) and optional group */
  user?: string;
  group?: string;
}

/** Commands that only make sense with a terminal attached; `--service auto` does not turn them into a service. */
const SHELLS = new Set(['sh', 'bash', 'ash', 'dash', 'zsh', 'ksh', 'fish', 'busybox', 'init', 'systemd']);

/**
 * serviceSpec turns an image config into a ServiceSpec, or a reason why there is none: no ENTRYPOINT/CMD, or a bare
 * shell or init (`bash`, `/bin/sh`, `/sbin/init`) that would exit at once without a terminal. argv[0] is looked up
 * in `rootfs` along the image's PATH (as docker run does) when it has no slash.
 */
export function serviceSpec(config: ContainerConfig, rootfs: string): ServiceSpec | { skip: string } {
  const argv = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
  if (argv.length === 0) return { skip: 'the image has no ENTRYPOINT or CMD' };
  const prog = argv[0] as string;
  if (argv.length === 1 && SHELLS.has(posix.basename(prog)))
    return { skip: `the image's command is ${JSON.stringify(prog)}, which needs a terminal` };
  const env = [...(config.Env ?? [])];
  if (!env.some((e) => e.startsWith('PATH='))) env.unshift(`PATH=${DEFAULT_PATH}`);
  const path = (env.find((e) => e.startsWith('PATH=')) as string).slice(5);
  if (!prog.includes('/')) {
    const found = path
      .split(':')
      .filter((d) => d.startsWith('/'))
      .map((d) => posix.join(d, prog))
      .find((p) => isExecutableIn(rootfs, p));
    if (found) argv[0] = found;
  }
  const spec: ServiceSpec = {
    name: SERVICE_NAME,
    argv,
    env,
    workingDir: posix.normalize(posix.join('/', config.WorkingDir ?? '')),
  };
  const userText = config.User ?? '';
  if (userText !== '') {
    const [user, group, ...rest] = userText.split(':');
    if (rest.length || !user)
      throw new InvalidInputError(`the image's USER ${JSON.stringify(userText)} is not user[:group]`);
    spec.user = user;
    if (group) spec.group = group;
  }
  return spec;
}

function isExecutableIn(rootfs: string, p: string): boolean {
  try {
    const st = lstatSync(secureJoin(rootfs, p));
    return st.isFile() && (st.mode & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** systemdQuote quotes one word for ExecStart= (systemd.service(5) "Command lines"): `%` and `$` are literal. */
export function systemdQuote(word: string): string {
  const escaped = word
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\n/g, '\\n')
    .replace(/%/g, '%%')
    .replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped) && escaped !== '' ? escaped : `"${escaped}"`;
}

/**
 * SERVICE_DESCRIPTION names the service where systemd and OpenRC show it. It never holds the command or the image
 * name: systemd prints the description on the console as it starts the unit (`Starting tsbuild-app.service -
 * <Description>...`), before the program runs, so words of the command line would satisfy `tsbuild boot --expect`
 * without the program's own output (`--expect hello` matched `/usr/bin/echo hello` there).
 */
export const SERVICE_DESCRIPTION = "tsbuild app (the image's ENTRYPOINT and CMD)";

/**
 * systemdUnit renders the unit: started after the network is up, output to the journal and the console. The
 * command line is only in ExecStart=, which systemd does not print (only its debug log does).
 */
export function systemdUnit(spec: ServiceSpec): string {
  const lines = [
    '# Written by tsbuild export: the image ENTRYPOINT/CMD, Env, WorkingDir and User.',
    '[Unit]',
    `Description=${SERVICE_DESCRIPTION}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${spec.argv.map(systemdQuote).join(' ')}`,
    ...spec.env.map((e) => `Environment=${systemdQuote(e).replace(/\$\$/g, '$')}`),
    `WorkingDirectory=${spec.workingDir}`,
    ...(spec.user ? [`User=${spec.user}`] : []),
    ...(spec.group ? [`Group=${spec.group}`] : []),
    'StandardOutput=journal+console',
    'StandardError=journal+console',
    'Restart=no',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ];
  return lines.join('\n');
}

/** shellQuote quotes a word for /bin/sh with single quotes. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * openrcScript renders /etc/init.d/NAME: start-stop-daemon in the background with the image's environment, working
 * directory and user, stdout and stderr to /dev/console. OpenRC prints ` * Starting tsbuild-app ...` (the service
 * name); the description (SERVICE_DESCRIPTION, not the command) only shows in `rc-service … describe`.
 */
export function openrcScript(spec: ServiceSpec): string {
  const [prog, ...args] = spec.argv;
  const userSpec = spec.user ? `${spec.user}${spec.group ? `:${spec.group}` : ''}` : undefined;
  const lines = [
    '#!/sbin/openrc-run',
    '# Written by tsbuild export: the image ENTRYPOINT/CMD, Env, WorkingDir and User.',
    `description=${shellQuote(SERVICE_DESCRIPTION)}`,
    // openrc-run evaluates command and command_args once more: quote the quoted words
    `command=${shellQuote(shellQuote(prog as string))}`,
    `command_args=${shellQuote(args.map(shellQuote).join(' '))}`,
    'command_background=yes',
    `pidfile="/run/\${RC_SVCNAME}.pid"`,
    `directory=${shellQuote(shellQuote(spec.workingDir))}`,
    ...(userSpec ? [`command_user=${shellQuote(shellQuote(userSpec))}`] : []),
    'output_log=/dev/console',
    'error_log=/dev/console',
    ...spec.env.map((e) => {
      const i = e.indexOf('=');
      const key = e.slice(0, i);
      return /^[A-Za-z_][A-Za-z0-9_]*$/.test(key)
        ? `export ${key}=${shellQuote(e.slice(i + 1))}`
        : `# skipped (not a shell name): ${key}`;
    }),
    '',
    'depend() {',
    '\tneed localmount',
    '\tafter net firewall',
    '}',
    '',
  ];
  return lines.join('\n');
}

/** detectInit tells which init system a rootfs boots with: systemd, OpenRC, or undefined (neither is installed). */
export function detectInit(rootfs: string): InitSystem | undefined {
  const has = (p: string): boolean => existsSync(secureJoin(rootfs, p));
  if (has('/lib/systemd/systemd') || has('/usr/lib/systemd/systemd')) return 'systemd';
  if (has('/sbin/openrc') || has('/sbin/openrc-run') || has('/usr/sbin/openrc')) return 'openrc';
  return undefined;
}

/**
 * installService writes the service for `init` into the rootfs and enables it (a multi-user.target.wants symlink,
 * or a symlink in /etc/runlevels/default). Returns the rootfs paths it wrote.
 */
export async function installService(rootfs: string, spec: ServiceSpec, init: InitSystem): Promise<string[]> {
  if (init === 'systemd') {
    const unit = `/etc/systemd/system/${spec.name}.service`;
    const link = `/etc/systemd/system/multi-user.target.wants/${spec.name}.service`;
    await writeIn(rootfs, unit, systemdUnit(spec), 0o644);
    await linkIn(rootfs, link, unit);
    return [unit, link];
  }
  const script = `/etc/init.d/${spec.name}`;
  const link = `/etc/runlevels/default/${spec.name}`;
  await writeIn(rootfs, script, openrcScript(spec), 0o755);
  await linkIn(rootfs, link, script);
  return [script, link];
}

/** writeIn writes a file at a rootfs path (parents created, a symlink at the path replaced, never followed). */
export async function writeIn(rootfs: string, path: string, content: string | Uint8Array, mode: number): Promise<void> {
  const host = secureJoin(rootfs, posix.dirname(path));
  await mkdir(host, { recursive: true, mode: 0o755 });
  const file = `${host}/${posix.basename(path)}`;
  await rm(file, { force: true });
  await writeFile(file, content, { mode });
  await chmod(file, mode);
}

/** linkIn makes a symlink at a rootfs path (replacing what is there). */
export async function linkIn(rootfs: string, path: string, target: string): Promise<void> {
  const host = `${secureJoin(rootfs, posix.dirname(path))}/${posix.basename(path)}`;
  await mkdir(dirname(host), { recursive: true, mode: 0o755 });
  await rm(host, { force: true });
  await symlink(target, host);
}
