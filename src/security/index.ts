/** Private swarms, peer allowlists, hostile-input decoding and private local files. */
export { generateSwarmKey, parseSwarmKey, writeSwarmKeyFile, readSwarmKeyFile, swarmProtector, SwarmKeyError } from './swarm-key.js';
export { allowlistGater, parsePeerIds, AllowlistError } from './allowlist.js';
export type { AllowlistHook, AllowlistOptions } from './allowlist.js';
export { decodeUntrusted, scanMsgpack, RejectCounter, UntrustedInputError, DEFAULT_LIMITS } from './untrusted.js';
export type { RejectReason, UntrustedLimits } from './untrusted.js';
export { ensurePrivateDir, DataDirError } from './local-files.js';
