// Where warnings go that arise deep below a caller that passed no handler (a layer's device node skipped rootless,
// inside a build's snapshot extraction). The library never prints: the CLI installs a sink that does.
export type WarningSink = (code: string, message: string) => void;

let sink: WarningSink = () => {};

/** setWarningSink sets the process's sink (the CLI: one `warning:` line on stderr per message). */
export function setWarningSink(fn: WarningSink): void {
  sink = fn;
}

/** warn hands a warning to the process's sink. */
export function warn(code: string, message: string): void {
  sink(code, message);
}
