// What the build progress renderers share: the renderer interface, the --progress modes, and a step's view.
import type { BuildEvent } from '../../builder/events.js';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet';

export interface Renderer {
  onEvent(e: BuildEvent): void;
  /** finish draws the final state (tty) and stops timers */
  finish(): void;
}

export interface StepView {
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

export function seconds(ms: number): string {
  return (ms / 1000).toFixed(1);
}
