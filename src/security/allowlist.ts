/**
 * Peer allowlist for a study's swarm: a libp2p connection gater that refuses every peer whose id is not
 * listed. The check sits where the remote peer id is first authenticated (after the encryption
 * handshake, `deny*EncryptedConnection`), so a stranger cannot claim a listed id; `denyDialPeer` keeps
 * us from dialling strangers in the first place. Peer ids are checked up front so a typo in a config
 * fails at start instead of silently locking a peer out.
 */
import type { ConnectionGater, PeerId } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { PeertuneError } from '../errors.js';

export class AllowlistError extends PeertuneError {
  override name = 'AllowlistError';
}

export type AllowlistHook = 'dial' | 'inbound' | 'outbound';

export interface AllowlistOptions {
  /** Called for every refusal (for counters and logs). */
  onDeny?: (peerId: string, hook: AllowlistHook) => void;
}

/** Canonical (base58btc) form of each id; throws naming the first malformed entry. */
export function parsePeerIds(peerIds: readonly string[], what = 'allowPeers'): string[] {
  if (!Array.isArray(peerIds)) throw new AllowlistError(`${what} must be an array of peer id strings, got ${typeof peerIds}`);
  return peerIds.map((raw, i) => {
    if (typeof raw !== 'string') throw new AllowlistError(`${what}[${i}] must be a peer id string, got ${typeof raw}`);
    const id = raw.trim();
    let parsed: PeerId;
    try {
      parsed = peerIdFromString(id);
    } catch {
      throw new AllowlistError(`${what}[${i}]: "${id.slice(0, 80)}" is not a valid libp2p peer id (expected something like 12D3KooW... as printed by \`peertune\` on start)`);
    }
    if (parsed.type === 'url') throw new AllowlistError(`${what}[${i}]: "${id.slice(0, 80)}" is a URL, not a peer id`);
    return parsed.toString();
  });
}

/**
 * A connection gater admitting only the listed peers. An empty list admits nobody (other than being
 * dialled by nobody); callers that want no allowlist should pass no gater at all.
 */
export function allowlistGater(peerIds: string[], opts: AllowlistOptions = {}): ConnectionGater {
  const allowed = new Set(parsePeerIds(peerIds));
  const deny = (peerId: PeerId, hook: AllowlistHook): boolean => {
    const id = peerId.toString();
    if (allowed.has(id)) return false;
    opts.onDeny?.(id, hook);
    return true;
  };
  return {
    denyDialPeer: (peerId) => deny(peerId, 'dial'),
    denyInboundEncryptedConnection: (peerId) => deny(peerId, 'inbound'),
    denyOutboundEncryptedConnection: (peerId) => deny(peerId, 'outbound'),
    // Belt and braces: the same verdict again once the connection is fully upgraded.
    denyInboundUpgradedConnection: (peerId) => !allowed.has(peerId.toString()),
    denyOutboundUpgradedConnection: (peerId) => !allowed.has(peerId.toString()),
  };
}
