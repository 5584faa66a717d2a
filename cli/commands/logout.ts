import { logoutRegistry } from '../../layers/registry/login.js';
import { type GlobalFlags, out } from '../common.js';

export default async function logout(registry: string, _flags: GlobalFlags): Promise<void> {
  const r = await logoutRegistry(registry);
  out(r.removed ? `Removed login credentials for ${r.registry}` : `Not logged in to ${r.registry}`);
}
