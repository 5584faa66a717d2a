// `tsbuild unshare [COMMAND [ARG…]]`: a shell (or COMMAND) in tsbuild's rootless user namespace, as `buildah unshare`
// and `podman unshare` give: the store's files show their image owners, and `tsbuild mount` views stay mounted
// until the shell exits. As root there is no namespace to enter: the command runs as it is.
import { runSession } from '../../sys/userns.js';

export default async function unshareCmd(command: string | undefined, flags: { _?: string[] }): Promise<void> {
  const argv = command === undefined ? [] : [command, ...(flags._ ?? []).map(String)];
  process.exitCode = await runSession(argv);
}
