/**
 * `peertune/peer`: the replicated storage (Automerge, level; libp2p once a replica starts its
 * network). A separate entry point so that `import { createStudy } from 'peertune'` stays light for
 * in-memory studies; `openPeerStorage` from 'peertune' is the same function, loaded on first call.
 */
export { openPeerStorage, PeerStorage } from './storage/replicated/index.js';
export type { PeerStorageOptions } from './storage/replicated/index.js';
