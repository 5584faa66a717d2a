// Build progress events: what build() reports as it goes (builder/execute.ts, builder/build.ts). Step ids are
// small integers in order of appearance; the CLI renders them (cli/progress/build-plain.ts, build-tty.ts).

/** BuildEvent is one thing that happened during a build. Step ids are small integers, in order of appearance. */
export type BuildEvent =
  | { type: 'step'; id: number; name: string }
  | { type: 'status'; id: number; message: string }
  | { type: 'cached'; id: number }
  | { type: 'log'; id: number; stream: 'stdout' | 'stderr'; data: string }
  | { type: 'done'; id: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'warning'; message: string };
