// Build progress on a terminal: a compact live view (one line per step, the last lines of the running step's
// output) redrawn in place; when a step fails its whole output is printed below the summary.
import { type Renderer, seconds, type StepView } from './build-render.js';

const TAIL = 6;

/**
 * ttyRenderer keeps a live summary on a terminal: a header with the elapsed time and one line per step (the
 * running ones show their last output lines). A failed step's full output is printed below the summary.
 */
export function ttyRenderer(
  out: { write(s: string): unknown; columns?: number },
  now: () => number = Date.now,
): Renderer {
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
