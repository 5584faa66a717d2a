// Build progress as BuildKit's --progress=plain: `#N [stage i/n] INSTRUCTION`, the step's output as
// `#N 0.123 line`, `#N CACHED`, `#N DONE 1.2s`, `#N ERROR: …`; for logs and pipes.
import { type Renderer, seconds, type StepView } from './build-render.js';

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
