// `--add-host NAME:host-gateway`: the address at which a RUN step reaches the host. Docker's builder writes its
// host-gateway IP (the docker0 bridge's address, a host interface) for every network mode; BuildKit itself takes
// whatever IP the client resolved. Here it is the host's own first non-loopback IPv4 address: from the step's own
// network (slirp4netns, whose gateway 10.0.2.2 leads only to the host's loopback and is disabled) connections to it
// go out through the host's sockets and reach services listening on that interface or on 0.0.0.0, as from a
// docker container; with `--network host` the same address is the host's; with `none` the name resolves but
// nothing answers (as in docker). A host with no such address gets 127.0.0.1 under `--network host` and an error
// otherwise.
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { InvalidInputError } from '../../sys/errors.js';

/** HOST_GATEWAY is the special IP of `--add-host`. */
export const HOST_GATEWAY = 'host-gateway';

/** hostGatewayIp is the address `host-gateway` stands for under `network`. */
export function hostGatewayIp(
  network: 'default' | 'none' | 'host',
  ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces(),
): string {
  for (const name of Object.keys(ifaces).sort()) {
    const v4 = ifaces[name]?.find((a) => a.family === 'IPv4' && !a.internal);
    if (v4) return v4.address;
  }
  if (network === 'host') return '127.0.0.1';
  throw new InvalidInputError(
    '--add-host NAME:host-gateway: this host has no non-loopback IPv4 address a RUN step could reach',
  );
}

/** resolveHostGateway replaces the `host-gateway` addresses of a hosts file's text for one step's network. */
export function resolveHostGateway(hosts: string, network: 'default' | 'none' | 'host'): string {
  if (!/^host-gateway\t/m.test(hosts)) return hosts;
  return hosts.replace(/^host-gateway\t/gm, `${hostGatewayIp(network)}\t`);
}
