import { bootDisk, type KvmMode } from '../../convert/boot.js';
import { InvalidInputError, TsbuildError } from '../../sys/errors.js';
import type { GlobalFlags } from '../common.js';
import { stderrProgress } from '../progress.js';

interface BootFlags extends GlobalFlags {
  timeout?: number | string;
  expect?: string;
  memory?: string;
  kvm?: string;
  /** seconds without serial output before `--kvm auto` restarts a KVM boot under TCG (0: never) */
  'kvm-watchdog'?: number | string;
  uefi?: boolean;
}

function seconds(flag: string, value: unknown, allowZero: boolean): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !allowZero))
    throw new InvalidInputError(
      `${flag} must be a ${allowZero ? 'non-negative' : 'positive'} number of seconds (got ${JSON.stringify(value)})`,
    );
  return n;
}

export default async function boot(file: string, flags: BootFlags): Promise<void> {
  const timeout = seconds('--timeout', flags.timeout ?? 300, false);
  const watchdog =
    flags['kvm-watchdog'] === undefined ? undefined : seconds('--kvm-watchdog', flags['kvm-watchdog'], true);
  let expect: RegExp | undefined;
  if (flags.expect !== undefined) {
    try {
      expect = new RegExp(String(flags.expect), 'm');
    } catch (err) {
      throw new InvalidInputError(`--expect is not a regular expression: ${(err as Error).message}`);
    }
  }
  const p = stderrProgress();
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const r = await bootDisk({
      disk: file,
      ...(expect ? { expect } : {}),
      timeoutMs: timeout * 1000,
      memory: String(flags.memory ?? '1G'),
      kvm: (flags.kvm ?? 'auto') as KvmMode,
      ...(watchdog !== undefined ? { kvmWatchdogMs: watchdog * 1000 } : {}),
      uefi: flags.uefi === true,
      onOutput: (text) => process.stdout.write(text),
      onEvent: (e) => {
        if (e.type === 'start') p.step(`booting ${file} under ${e.accel === 'kvm' ? 'KVM' : 'TCG'}`);
        else p.step(e.message);
      },
      signal: abort.signal,
    });
    process.stdout.write('\n');
    const what = expect ? `/${expect.source}/` : 'a login prompt';
    switch (r.outcome) {
      case 'matched':
        p.step(`matched ${what} after ${r.seconds.toFixed(1)}s (${r.accel}); the VM is stopped`);
        return;
      case 'panic':
        throw new TsbuildError('E_KERNEL_PANIC', `the kernel panicked after ${r.seconds.toFixed(1)}s (${r.accel})`);
      case 'exited':
        throw new TsbuildError(
          'E_BOOT_FAILED',
          `the VM stopped after ${r.seconds.toFixed(1)}s without printing ${what} (${r.accel})`,
        );
      case 'timeout':
        throw new TsbuildError(
          'E_BOOT_TIMEOUT',
          `no ${what} within ${timeout}s (${r.accel})`,
          r.accel === 'tcg' ? { hint: 'TCG is slow: raise --timeout' } : {},
        );
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
