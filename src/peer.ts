/**
 * `peertune/peer`: the replicated storage (libp2p, Automerge, level). A separate entry point so that
 * `import { createStudy } from 'peertune'` stays light for in-memory studies; `openPeerStorage` from
 * 'peertune' is the same function, loaded on first call.
 */
export { openPeerStorage, PeerStorage } from './storage/replicated/index.js';
export type { PeerStorageOptions } from './storage/replicated/index.js';
