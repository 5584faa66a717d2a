// Build progress: the events build() emits, and the two renderers the CLI uses on stderr.
//
// plain (BuildKit's --progress=plain): `#N [stage i/n] INSTRUCTION`, the step's output as `#N 0.123 line`,
// `#N CACHED`, `#N DONE 1.2s`, `#N ERROR: …`. tty: a compact live view (one line per step, the last lines of the
// running step's output) redrawn in place; when a step fails its whole output is printed.

/** BuildEvent is one thing that happened during a build. Step ids are small integers, in order of appearance. */
export type BuildEvent =
  | { type: 'step'; id: number; name: string }
  | { type: 'status'; id: number; message: string }
  | { type: 'cached'; id: number }
  | { type: 'log'; id: number; stream: 'stdout' | 'stderr'; data: string }
  | { type: 'done'; id: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'warning'; message: string };

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet';

export interface Renderer {
  onEvent(e: BuildEvent): void;
  /** finish draws the final state (tty) and stops timers */
  finish(): void;
}

interface StepView {
  id: number;
  name: string;
  start: number;
  end?: number;
  cached: boolean;
  error?: string;
  log: string[];
  /** an unterminated last line */
  partial: string;
  status?: string;
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}

/** plainRenderer writes BuildKit-style plain progress to `write`. */
export function plainRenderer(write: (s: string) => void, now: () => number = Date.now): Renderer {
  const steps = new Map<number, StepView>();
  let last = -1;
  const head = (s: StepView): void => {
    if (last !== s.id) {
      last = s.id;
    }
  };
  const flushPartial = (s: StepView): void => {
    if (s.partial) {
      write(`#${s.id} ${seconds(now() - s.start).padStart(5)} ${s.partial}\n`);
      s.partial = '';
    }
  };
  return {
    onEvent(e) {
      switch (e.type) {
        case 'step': {
          const s: StepView = { id: e.id, name: e.name, start: now(), cached: false, log: [], partial: '' };
          steps.set(e.id, s);
          write(`\n#${e.id} ${e.name}\n`);
          last = e.id;
          return;
        }
        case 'status': {
          const s = steps.get(e.id);
          if (s) head(s);
          write(`#${e.id} ${e.message}\n`);
          return;
        }
        case 'cached': {
          const s = steps.get(e.id);
          if (s) s.cached = true;
          write(`#${e.id} CACHED\n`);
          return;
        }
        case 'log': {
          const s = steps.get(e.id);
          if (!s) return;
          head(s);
          const text = s.partial + e.data;
          const lines = text.split('\n');
          s.partial = lines.pop() ?? '';
          const t = seconds(now() - s.start).padStart(5);
          for (const l of lines) write(`#${e.id} ${t} ${l.replace(/\r/g, '')}\n`);
          return;
        }
        case 'done': {
          const s = steps.get(e.id);
          if (!s || s.cached) return;
          flushPartial(s);
          write(`#${e.id} DONE ${seconds(now() - s.start)}s\n`);
          return;
        }
        case 'error': {
          const s = steps.get(e.id);
          if (s) flushPartial(s);
          write(`#${e.id} ERROR: ${e.message}\n`);
          return;
        }
        case 'warning':
          write(`WARNING: ${e.message}\n`);
          return;
      }
    },
    finish() {},
  };
}

const TAIL = 6;

/**
 * ttyRenderer keeps a live summary on a terminal: a header with the elapsed time and one line per step (the
 * running ones show their last output lines). A failed step's full output is printed below the summary.
 */
export function ttyRenderer(out: { write(s: string): unknown; columns?: number }, now: () => number = Date.now): Renderer {
  const started = now();
  const steps: StepView[] = [];
  const byId = new Map<number, StepView>();
  const warnings: string[] = [];
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  let dirty = false;
  let finished = false;
  const width = (): number => Math.max(40, (out.columns ?? 100) - 1);
  const clip = (s: string): string => (s.length > width() ? `${s.slice(0, width() - 1)}…` : s);
  const render = (final: boolean): void => {
    dirty = false;
    const lines: string[] = [];
    const doneCount = steps.filter((s) => s.end !== undefined).length;
    lines.push(`[+] Building ${seconds(now() - started)}s (${doneCount}/${steps.length})${final ? ' FINISHED' : ''}`);
    for (const s of steps) {
      const t = seconds((s.end ?? now()) - s.start);
      const state = s.error ? ' ERROR' : s.cached ? ' CACHED' : '';
      const left = ` => ${s.name}`;
      const right = `${state} ${t}s`;
      const room = width() - right.length;
      lines.push(`${clip(left).slice(0, room).padEnd(room)}${right}`);
      if (s.end === undefined && !final) {
        const tail = [...s.log, ...(s.partial ? [s.partial] : [])].slice(-TAIL);
        for (const l of tail) lines.push(clip(` => => ${l}`));
        if (s.status) lines.push(clip(` => => ${s.status}`));
      }
    }
    let text = '';
    if (drawn > 0) text += `\x1b[${drawn}A`;
    for (const l of lines) text += `\x1b[2K${l}\n`;
    // clear lines left over from a taller previous frame
    const extra = Math.max(0, drawn - lines.length);
    for (let i = 0; i < extra; i++) text += '\x1b[2K\n';
    if (extra > 0) text += `\x1b[${extra}A`;
    out.write(text);
    drawn = lines.length;
  };
  const schedule = (): void => {
    dirty = true;
    timer ??= setInterval(() => {
      if (dirty && !finished) render(false);
    }, 100);
    timer.unref?.();
  };
  return {
    onEvent(e) {
      switch (e.type) {
        case 'step': {
          const s: StepView = { id: e.id, name: e.name, start: now(), cached: false, log: [], partial: '' };
          steps.push(s);
          byId.set(e.id, s);
          break;
        }
        case 'status': {
          const s = byId.get(e.id);
          if (s) s.status = e.message;
          break;
        }
        case 'cached': {
          const s = byId.get(e.id);
          if (s) s.cached = true;
          break;
        }
        case 'log': {
          const s = byId.get(e.id);
          if (!s) break;
          const lines = (s.partial + e.data).split('\n');
          s.partial = lines.pop() ?? '';
          s.log.push(...lines.map((l) => l.replace(/\r/g, '')));
          if (s.log.length > 5000) s.log.splice(0, s.log.length - 5000);
          break;
        }
        case 'done': {
          const s = byId.get(e.id);
          if (s) s.end = now();
          break;
        }
        case 'error': {
          const s = byId.get(e.id);
          if (s) {
            s.end = now();
            s.error = e.message;
          }
          break;
        }
        case 'warning':
          warnings.push(e.message);
          break;
      }
      schedule();
    },
    finish() {
      finished = true;
      if (timer) clearInterval(timer);
      render(true);
      for (const s of steps.filter((x) => x.error)) {
        out.write(`------\n > ${s.name}:\n`);
        for (const l of [...s.log, ...(s.partial ? [s.partial] : [])]) out.write(`${l}\n`);
        out.write(`------\n`);
      }
      for (const w of warnings) out.write(`WARNING: ${w}\n`);
    },
  };
}
