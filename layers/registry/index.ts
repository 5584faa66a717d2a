// The distribution client's public surface: push, pull, login, logout (and the pieces callers may reuse).
export { pullImage, type PullOptions, type PullResult } from './pull.js';
export { pushImage, type PushOptions, type PushResult } from './push.js';
export { loginRegistry, logoutRegistry, type LoginOptions, type LoginResult } from './login.js';
export type { TransferEvent, OnTransferEvent, BlobOutcome } from './events.js';
export type { RemoteOptions } from './connect.js';
export type { Credentials } from './auth.js';
export { RegistryError, AuthError } from './registry-error.js';
