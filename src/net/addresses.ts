/**
 * What the storage's options need of the network without loading libp2p (node.ts, imported only
 * when a peer starts its network): join-address parsing, the quarantine defaults, the error class.
 * A replica without a network (`listen: []`, no join: every offline CLI read) then never imports
 * libp2p, gossipsub, noise or yamux: about 0.2 s and 20 MB less.
 */
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { PeertuneError } from '../errors.js';

export class NetError extends PeertuneError {
  override name = 'NetError';
}

/**
 * When a connected peer counts as a repeat offender. Rejects are charged to the peer that delivered
 * the message (gossip's propagation source, the sync stream's remote), never to the signed author:
 * authors are free to make up, connections are not. Honest peers do not forward what they reject, so
 * they only get here by a bug on their side.
 */
export interface QuarantineOptions {
  /** Rejected messages from one peer within `windowMs` that trigger a quarantine. */
  maxRejects: number;
  windowMs: number;
  /** How long a quarantined peer is disconnected and refused. */
  blockMs: number;
}

export const DEFAULT_QUARANTINE: Readonly<QuarantineOptions> = { maxRejects: 32, windowMs: 60_000, blockMs: 10 * 60_000 };

/** Parses a join address, naming the problem if it is not a dialable /p2p/ multiaddr. */
export function parseJoinAddress(addr: string): { ma: Multiaddr; peerId: string | null } {
  if (typeof addr !== 'string' || addr.length === 0) throw new NetError(`join address must be a multiaddr string, got ${JSON.stringify(addr)}`);
  let ma: Multiaddr;
  try {
    ma = multiaddr(addr);
  } catch (e) {
    throw new NetError(`join address "${addr}" is not a multiaddr (${(e as Error).message}); expected something like /ip4/192.168.1.10/tcp/4001/p2p/12D3KooW...`);
  }
  const peerId = ma.getPeerId();
  return { ma, peerId };
}
