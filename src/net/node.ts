/**
 * The libp2p node of one peer: tcp + noise + yamux + identify + gossipsub (StrictSign), optional
 * mDNS and private-swarm key, a connection gater (allowlist and local blocks). libp2p 2.x does not
 * auto-dial, so this module keeps its own list of wanted peers (join addresses, peers announced in
 * heartbeats, mDNS finds) and redials them with backoff while it runs. A peer that keeps sending what
 * our validators reject (gossip it relays, sync frames it sends) is quarantined: disconnected and
 * refused for a while. It knows nothing of studies: it carries topics and byte streams.
 */
import './polyfill.js';
import { createHash } from 'node:crypto';
import os from 'node:os';
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import './yamux-window.js';
import { identify } from '@libp2p/identify';
import { mdns } from '@libp2p/mdns';
import { gossipsub, type GossipSub } from '@chainsafe/libp2p-gossipsub';
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';
import type { ConnectionGater, PeerId, PrivateKey, Stream } from '@libp2p/interface';
import { TopicValidatorResult } from '@libp2p/interface';
import { logger } from '../logging.js';
import { allowlistGater } from '../security/allowlist.js';
import { swarmProtector } from '../security/swarm-key.js';
import { readFrames, frame, pushable } from './wire.js';
import { HEARTBEAT_TOPIC } from './liveness.js';
import { NetError, parseJoinAddress, type QuarantineOptions } from './addresses.js';

export { NetError, DEFAULT_QUARANTINE, parseJoinAddress, type QuarantineOptions } from './addresses.js';

export const SYNC_PROTOCOL = '/peertune/sync/1.0.0';
/** Largest gossip message accepted (gossipsub itself refuses to publish above 4 MiB). */
export const MAX_GOSSIP_BYTES = 1024 * 1024;

/**
 * Gossipsub checks a message's signature before it looks the message id up in its seen cache, so each
 * copy of a message (one per mesh peer that forwards it) costs a signature check. With this id it drops
 * byte-identical copies of a message that already passed validation before any check; it covers every
 * field, signature included, so only exact copies match.
 */
function fastMessageId(msg: { from?: Uint8Array; seqno?: Uint8Array; data?: Uint8Array; signature?: Uint8Array; key?: Uint8Array; topic: string }): string {
  const h = createHash('sha256');
  for (const part of [msg.from, msg.seqno, msg.signature, msg.key, msg.data]) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(part?.byteLength ?? 0);
    h.update(len);
    if (part) h.update(part);
  }
  h.update(msg.topic);
  return h.digest('base64');
}

/** A short, stable tag of a peer id, as heartbeats list their sender's neighbours (liveness.ts). */
export function peerTag(peerId: string): string {
  return createHash('sha256').update(peerId).digest('base64url').slice(0, 12);
}

/** Authors whose neighbour lists are kept (the least recently updated is dropped first). */
const MAX_NEIGHBOUR_LISTS = 1024;

interface NeighbourList {
  author: string;
  /** peerTag(author) */
  tag: string;
  tags: Set<string>;
}

/** A connection is listed as a neighbour once it has been open this long (one that a gater refuses never is). */
const NEIGHBOUR_AFTER_MS = 1000;


/** Peers whose recent rejects are remembered (the oldest is forgotten first). */
const MAX_TRACKED_OFFENDERS = 4096;
/**
 * Peers learned from heartbeats or mDNS are dialled while this peer has fewer connections than this
 * (join addresses always are, and inbound connections are taken up to the connection manager's
 * limit). Up to 33 peers every peer reaches every other directly and an author's message takes one
 * hop; past that the gossipsub mesh relays it. Dialling everyone instead costs n^2 / 2 connections,
 * each a handshake and a sync session: 64 peers of one machine took 6 minutes to form.
 */
export const DIAL_TARGET = 32;

export interface NodeOptions {
  privateKey: PrivateKey;
  listen: string[];
  join: string[];
  mdns: boolean;
  swarmKey?: Uint8Array;
  allowPeers?: string[];
  /** Repeat offenders; null = never quarantine (fuzzers that play one attacker for a long time). */
  quarantine: QuarantineOptions | null;
  /** Counts refused connections etc. */
  count(reason: string): void;
}

export type Verdict = 'accept' | 'reject' | 'ignore';

/** A framed duplex channel over one libp2p stream. */
export interface Channel {
  readonly remotePeer: string;
  send(payload: Uint8Array): void;
  frames(maxFrame: number): AsyncGenerator<Uint8Array>;
  close(): Promise<void>;
  abort(reason: string): void;
  /** The remote sent something invalid: counts toward its quarantine. */
  reportInvalid(reason: string): void;
}

interface Wanted {
  addrs: Multiaddr[];
  peerId: string | null;
  nextAt: number;
  backoff: number;
  /** Join addresses stay wanted forever; learned ones are dropped after repeated failures. */
  permanent: boolean;
  failures: number;
  /** Reached at least once: losing it later (the peer ended its run) is not "cannot reach yet". */
  reached?: boolean;
  /** When it was first dialled, and whether "cannot reach" was logged for it (once). */
  since?: number;
  warned?: boolean;
}

/**
 * A join address not reached yet is warned about once its dials have failed for this long (a dial
 * that times out takes as long), or at once when nobody listens there (ECONNREFUSED): many peers
 * started on one machine at once all dial the peer they join, libp2p lets one host open 5
 * connections a second and drops the rest mid-handshake, and a later attempt gets through (16 peers:
 * within about 3 s). Those first failures are not worth a warning.
 */
const UNREACHED_WARN_MS = 5000;


function channel(stream: Stream, remotePeer: string, onInvalid: (peerId: string, reason: string) => void): Channel {
  const out = pushable();
  const sinkDone = stream.sink(out.source).catch(() => {});
  return {
    remotePeer,
    send: (payload) => out.push(frame(payload)),
    frames: (maxFrame) => readFrames(stream.source, maxFrame),
    close: async () => {
      out.end();
      await Promise.race([sinkDone, new Promise((r) => setTimeout(r, 1000).unref())]);
      try {
        await stream.close();
      } catch {
        stream.abort(new Error('close failed'));
      }
    },
    abort: (reason) => {
      out.end();
      stream.abort(new Error(reason));
    },
    reportInvalid: (reason) => onInvalid(remotePeer, reason),
  };
}

/** The addresses peers of this machine connect from: loopback and this host's own interfaces. */
export function sameHostAddresses(): Set<string> {
  const ips = new Set(['127.0.0.1', '::1']);
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) ips.add(a.address);
  return ips;
}

export class PeerNode {
  private readonly wanted = new Map<string, Wanted>();
  private readonly blocked = new Set<string>();
  private dialTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  private readonly dialing = new Set<string>();
  /** Times of recent rejects per delivering peer (at most maxRejects each). */
  private readonly offences = new Map<string, number[]>();
  /** Quarantined peers and the timers that release them. */
  private readonly quarantined = new Map<string, NodeJS.Timeout>();
  /** Per author (keyed by its id's multihash bytes, as gossip carries it): the peers it said it is connected to. */
  private readonly neighbourLists = new Map<string, NeighbourList>();
  /** The same lists by author id. */
  private readonly neighbourListOf = new Map<string, NeighbourList>();
  /** Tags of the peers we are connected to (and since when), both ways. */
  private readonly tagOfPeer = new Map<string, { tag: string; since: number }>();
  private readonly peerByTag = new Map<string, string>();

  private constructor(
    readonly libp2p: Libp2p<{ pubsub: GossipSub; identify: unknown }>,
    private readonly opts: NodeOptions,
    /** Copies of gossip messages received (study topics, the heartbeat topic), duplicates included: a transport figure, not a verdict. */
    readonly copies: { readonly study: number; readonly heartbeat: number },
  ) {}

  static async start(opts: NodeOptions, onConnect: (peerId: string, outbound: boolean) => void, onDisconnect: (peerId: string) => void): Promise<PeerNode> {
    const joins = opts.join.map(parseJoinAddress);
    let self: PeerNode | null = null;
    // The allowlist is security/allowlist.ts's gater; local blocks and quarantine are checked on top of it.
    const allow = opts.allowPeers ? allowlistGater(opts.allowPeers, { onDeny: (_id, hook) => opts.count(`denied-not-allowed:${hook}`) }) : null;
    const local = (peerId: PeerId, hook: string): boolean => {
      const id = peerId.toString();
      if (self?.blocked.has(id)) {
        opts.count(`denied-blocked:${hook}`);
        return true;
      }
      if (self?.quarantined.has(id)) {
        opts.count(`denied-quarantined:${hook}`);
        return true;
      }
      return false;
    };
    const gater: ConnectionGater = {
      denyDialPeer: async (p) => (allow ? await allow.denyDialPeer!(p) : false) || local(p, 'dial'),
      denyInboundEncryptedConnection: async (p, c) => (allow ? await allow.denyInboundEncryptedConnection!(p, c) : false) || local(p, 'inbound'),
      denyOutboundEncryptedConnection: async (p, c) => (allow ? await allow.denyOutboundEncryptedConnection!(p, c) : false) || local(p, 'outbound'),
      denyInboundUpgradedConnection: async (p, c) => (allow ? await allow.denyInboundUpgradedConnection!(p, c) : false),
      denyOutboundUpgradedConnection: async (p, c) => (allow ? await allow.denyOutboundUpgradedConnection!(p, c) : false),
    };
    const copies = { study: 0, heartbeat: 0 };
    const create = () => createLibp2p({
      privateKey: opts.privateKey,
      addresses: { listen: opts.listen },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: gater,
      // A connection without the key is closed as soon as its first bytes (or their absence) show it (issue 15 F5).
      ...(opts.swarmKey ? { connectionProtector: swarmProtector(opts.swarmKey, { onReject: (r) => opts.count(`pnet:${r}`) }) } : {}),
      peerDiscovery: opts.mdns ? [mdns({ interval: 2000 })] : [],
      // Pending (not yet upgraded) inbound connections: libp2p's defaults are 10 slots held up to 10 s each,
      // which 10 idle sockets renewed once a second keep full (issue 15 F5). More slots, held 5 s at most;
      // one host still opens at most 5 connections a second (libp2p's inboundConnectionThreshold).
      connectionManager: { maxConnections: 200, maxIncomingPendingConnections: 64, inboundUpgradeTimeout: 5000 },
      services: {
        identify: identify(),
        pubsub: gossipsub({
          allowPublishToZeroTopicPeers: true,
          emitSelf: false,
          globalSignaturePolicy: 'StrictSign',
          floodPublish: true,
          // Every copy received, the duplicates gossipsub drops included (PeerStorage.stats().gossipCopies).
          fastMsgIdFn: (m: Parameters<typeof fastMessageId>[0]) => {
            if (m.topic === HEARTBEAT_TOPIC) copies.heartbeat++;
            else copies.study++;
            return fastMessageId(m);
          },
          heartbeatInterval: 700,
          maxInboundDataLength: MAX_GOSSIP_BYTES + 64 * 1024,
          // Our validators reject bad payloads; gossipsub then does not forward them and scores the sender down.
          scoreThresholds: { gossipThreshold: -4000, publishThreshold: -8000, graylistThreshold: -16000, acceptPXThreshold: 100, opportunisticGraftThreshold: 5 },
          // Gossipsub scores a peer down by (n - 10)^2 x 5 once more than 10 peers come from its IP (a
          // defence against many identities on one address). Peers of this machine all do: past 10 of
          // them every score is negative, the mesh stays empty and nothing is relayed, and past about
          // 50 the score falls below publishThreshold and even the author stops sending (64 in-process
          // peers never spread a trial). Processes of this machine are not a Sybil threat to it.
          scoreParams: { IPColocationFactorWhitelist: sameHostAddresses() },
          // No IDONTWANT (gossipsub 1.2): for every message received it sends one to each mesh peer, a
          // message each costing sender and receiver about as much as any other, while the relay rule
          // (installRelayFilter) already keeps relays from sending copies to peers the author reaches.
          // Measured with 8 / 16 peer processes on 2 cores: 374 -> 425 and 41 -> 51 trials/s.
          idontwantMinDataSize: Number.MAX_SAFE_INTEGER,
          // Lazy gossip (IHAVE) to one peer per heartbeat, not six: authors flood-publish to every peer
          // they are connected to, the mesh relays past them, and anti-entropy repairs what both miss, so
          // IHAVEs mostly announce what their receivers hold; with our heartbeats always in the message
          // cache they went out every 700 ms. Measured with 16 peer processes on 2 cores: an idle swarm
          // 0.64-0.76 -> 0.49-0.55 cores, trials/s 99.7 / 164.7 / 97.8 -> 176.2 / 177.8 / 170.6; 8 peers
          // unchanged within noise (595 / 785 / 585 -> 773 / 619 / 541).
          Dlazy: 1,
          gossipFactor: 0,
        }),
      },
    });
    let libp2p: Awaited<ReturnType<typeof create>>;
    try {
      libp2p = await create();
    } catch (e) {
      throw new NetError(`cannot start the peer on listen addresses ${opts.listen.join(', ')}: ${(e as Error).message}`);
    }
    const node = new PeerNode(libp2p as unknown as Libp2p<{ pubsub: GossipSub; identify: unknown }>, opts, copies);
    self = node;
    node.installRelayFilter();
    libp2p.addEventListener('connection:open', (ev) => {
      const c = ev.detail;
      node.connected(c.remotePeer.toString());
      onConnect(c.remotePeer.toString(), c.direction === 'outbound');
    });
    libp2p.addEventListener('peer:disconnect', (ev) => {
      const id = ev.detail.toString();
      node.disconnected(id);
      const w = node.wanted.get(id);
      if (w) w.nextAt = Date.now() + 200;
      onDisconnect(id);
    });
    libp2p.addEventListener('peer:discovery', (ev) => {
      const { id, multiaddrs } = ev.detail;
      node.want(id.toString(), multiaddrs, false);
    });
    for (const j of joins) {
      const key = j.peerId ?? j.ma.toString();
      node.wanted.set(key, { addrs: [j.ma], peerId: j.peerId, nextAt: 0, backoff: 250, permanent: true, failures: 0 });
    }
    node.dialTimer = setInterval(() => node.dialDue(), 250);
    node.dialTimer.unref();
    node.dialDue();
    return node;
  }

  get peerId(): string {
    return this.libp2p.peerId.toString();
  }

  multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map((m) => m.toString());
  }

  connectedPeers(): string[] {
    return this.libp2p.getPeers().map((p) => p.toString());
  }

  isConnected(peerId: string): boolean {
    return this.libp2p.getConnections().some((c) => c.remotePeer.toString() === peerId && c.status === 'open');
  }

  /** Adds a peer to keep connected to (learned from a heartbeat or mDNS). */
  want(peerId: string, addrs: readonly (Multiaddr | string)[], permanent: boolean): void {
    if (peerId === this.peerId || this.blocked.has(peerId) || this.quarantined.has(peerId) || this.stopped) return;
    const mas: Multiaddr[] = [];
    for (const a of addrs.slice(0, 8)) {
      try {
        const ma = typeof a === 'string' ? multiaddr(a) : a;
        mas.push(ma.getPeerId() ? ma : ma.encapsulate(`/p2p/${peerId}`));
      } catch {
        /* skip unparsable announced address */
      }
    }
    if (mas.length === 0) return;
    const w = this.wanted.get(peerId);
    if (w) {
      w.addrs = mas;
      return;
    }
    if (this.wanted.size > 256) return;
    this.wanted.set(peerId, { addrs: mas, peerId, nextAt: 0, backoff: 250, permanent, failures: 0 });
  }

  private dialDue(): void {
    if (this.stopped) return;
    const now = Date.now();
    let room = DIAL_TARGET - this.libp2p.getPeers().length - this.dialing.size;
    for (const [key, w] of this.wanted) {
      if (w.nextAt > now || this.dialing.has(key)) continue;
      if (w.peerId && (this.isConnected(w.peerId) || this.blocked.has(w.peerId) || this.quarantined.has(w.peerId))) continue;
      if (!w.permanent && room <= 0) continue;
      room--;
      this.dialing.add(key);
      w.since ??= now;
      const target = w.addrs.length === 1 ? w.addrs[0]! : w.addrs;
      this.libp2p
        .dial(target, { signal: AbortSignal.timeout(5000) })
        .then((conn) => {
          w.backoff = 250;
          w.failures = 0;
          w.reached = true;
          const id = conn.remotePeer.toString();
          if (!w.peerId) {
            // A join address without /p2p/: remember whom it reached.
            w.peerId = id;
          }
          this.libp2p.peerStore.merge(conn.remotePeer, { tags: { 'keep-alive': { value: 1 } } }).catch(() => {});
        })
        .catch((e: Error) => {
          if (this.stopped) return;
          w.failures++;
          w.nextAt = Date.now() + w.backoff;
          w.backoff = Math.min(w.backoff * 2, 5000);
          if (w.failures === 1 && w.permanent && w.reached) logger.debug(`Lost ${w.addrs[0]!.toString()} (${e.message}); redialling in the background.`);
          else if (w.permanent && !w.reached && !w.warned && (/ECONNREFUSED/.test(e.message) || Date.now() - w.since! >= UNREACHED_WARN_MS)) {
            w.warned = true;
            logger.warn(`Cannot reach ${w.addrs[0]!.toString()} yet (${e.message}, ${w.failures} attempt(s)); retrying in the background.`);
          } else if (w.failures === 1 && w.permanent && !w.reached) logger.debug(`Cannot reach ${w.addrs[0]!.toString()} yet (${e.message}); retrying.`);
          if (!w.permanent && w.failures > 10) this.wanted.delete(key);
        })
        .finally(() => this.dialing.delete(key));
    }
  }

  /** Refuses and drops connections to these peers until unblocked (quarantine, and partition tests). */
  async block(peerIds: readonly string[]): Promise<void> {
    for (const id of peerIds) this.blocked.add(id);
    await Promise.all(peerIds.map((id) => this.libp2p.hangUp(peerIdFromString(id)).catch(() => {})));
  }

  unblock(peerIds: readonly string[]): void {
    for (const id of peerIds) {
      this.blocked.delete(id);
      const w = this.wanted.get(id);
      if (w) {
        w.nextAt = 0;
        w.backoff = 250;
      }
    }
  }

  /** Peers in quarantine now (for stats and tests). */
  quarantinedPeers(): string[] {
    return [...this.quarantined.keys()];
  }

  /** Charges one rejected message to the peer that delivered it; quarantines a repeat offender. */
  reportInvalid(peerId: string, reason: string): void {
    const q = this.opts.quarantine;
    if (!q || this.stopped || peerId === this.peerId || this.quarantined.has(peerId)) return;
    const now = Date.now();
    let times = this.offences.get(peerId);
    if (!times) {
      if (this.offences.size >= MAX_TRACKED_OFFENDERS) this.offences.delete(this.offences.keys().next().value!);
      times = [];
      this.offences.set(peerId, times);
    }
    times.push(now);
    while (times.length > 0 && (times[0]! <= now - q.windowMs || times.length > q.maxRejects)) times.shift();
    if (times.length < q.maxRejects) return;
    this.offences.delete(peerId);
    this.opts.count('quarantine:peers');
    logger.warn(`Peer ${peerId} sent ${q.maxRejects} invalid messages within ${Math.round(q.windowMs / 1000)} s (last: ${reason}); disconnecting it and refusing it for ${Math.round(q.blockMs / 1000)} s.`);
    const release = setTimeout(() => {
      this.quarantined.delete(peerId);
      const w = this.wanted.get(peerId);
      if (w) w.nextAt = 0;
    }, q.blockMs);
    release.unref();
    this.quarantined.set(peerId, release);
    this.libp2p.hangUp(peerIdFromString(peerId)).catch(() => {});
  }

  // ------------------------------------------------------------ gossip

  /** Per author whose neighbour list this node holds: how many neighbours it listed (for tests). */
  neighbourListSizes(): Map<string, number> {
    return new Map([...this.neighbourListOf].map(([id, l]) => [id, l.tags.size]));
  }

  /** This peer's neighbours as heartbeats list them (`peerTag` of each connected peer). */
  neighbourTags(): string[] {
    const settled = Date.now() - NEIGHBOUR_AFTER_MS;
    const out: string[] = [];
    for (const [id, e] of this.tagOfPeer) if (e.since <= settled && this.isConnected(id)) out.push(e.tag);
    return out;
  }

  private connected(peerId: string): void {
    if (this.tagOfPeer.has(peerId)) return;
    const tag = peerTag(peerId);
    this.tagOfPeer.set(peerId, { tag, since: Date.now() });
    this.peerByTag.set(tag, peerId);
  }

  private disconnected(peerId: string): void {
    const e = this.tagOfPeer.get(peerId);
    if (e === undefined) return;
    this.tagOfPeer.delete(peerId);
    this.peerByTag.delete(e.tag);
  }

  /**
   * Records whom `author` is connected to, from its signed heartbeat (an author can only speak for
   * itself here: a list that leaves peers out costs it relays, one that adds peers costs its own
   * messages their reach until anti-entropy repairs them).
   */
  setNeighbours(author: string, tags: readonly string[]): void {
    let key: string;
    try {
      key = Buffer.from(peerIdFromString(author).toMultihash().bytes).toString('base64');
    } catch {
      return;
    }
    this.neighbourLists.delete(key);
    if (this.neighbourLists.size >= MAX_NEIGHBOUR_LISTS) {
      const [oldKey, old] = this.neighbourLists.entries().next().value!;
      this.neighbourLists.delete(oldKey);
      this.neighbourListOf.delete(old.author);
    }
    const list = { author, tag: this.tagOfPeer.get(author)?.tag ?? peerTag(author), tags: new Set(tags) };
    this.neighbourLists.set(key, list);
    this.neighbourListOf.set(author, list);
  }

  /**
   * Gossipsub forwards every new message to its whole mesh, including peers that got it from its
   * author already (with flood publishing, every peer connected to the author): in a swarm where
   * peers are connected to each other, each receiver gets one useful copy and about a mesh's worth of
   * duplicates, each costing transport and a lookup. Here a relay skips the author and the peers the
   * author listed as its neighbours in its last heartbeat; peers out of its reach still get the message
   * through the mesh, and what a stale list misses, anti-entropy repairs (heartbeat digests, then sync).
   */
  private installRelayFilter(): void {
    const ps = this.libp2p.services.pubsub as unknown as {
      forwardMessage(msgIdStr: string, rawMsg: { from?: Uint8Array }, propagationSource?: string, excludePeers?: Set<string>): void;
    };
    const forward = ps.forwardMessage.bind(ps);
    ps.forwardMessage = (msgIdStr, rawMsg, propagationSource, excludePeers) => {
      const list = rawMsg.from ? this.neighbourLists.get(Buffer.from(rawMsg.from.buffer, rawMsg.from.byteOffset, rawMsg.from.byteLength).toString('base64')) : undefined;
      if (list) {
        const skip = new Set(excludePeers ?? []);
        skip.add(list.author);
        for (const tag of list.tags) {
          const id = this.peerByTag.get(tag);
          // Both sides must say so: the author lists the peer and the peer lists the author.
          if (id !== undefined && this.neighbourListOf.get(id)?.tags.has(list.tag)) skip.add(id);
        }
        excludePeers = skip;
      }
      forward(msgIdStr, rawMsg, propagationSource, excludePeers);
    };
  }

  subscribe(topic: string, validate: (from: string, data: Uint8Array, via: string) => Verdict): void {
    const ps = this.libp2p.services.pubsub;
    ps.topicValidators.set(topic, (peer, msg) => {
      if (msg.type !== 'signed') {
        this.reportInvalid(peer.toString(), `unsigned gossip on ${topic}`);
        return TopicValidatorResult.Reject;
      }
      if (msg.data.byteLength > MAX_GOSSIP_BYTES) {
        this.opts.count('gossip:too-large');
        this.reportInvalid(peer.toString(), `oversized gossip on ${topic}`);
        return TopicValidatorResult.Reject;
      }
      let v: Verdict;
      try {
        v = validate(msg.from.toString(), msg.data, peer.toString());
      } catch (e) {
        logger.debug(`gossip validator failed: ${(e as Error).message}`);
        v = 'reject';
      }
      if (v === 'reject') this.reportInvalid(peer.toString(), `gossip on ${topic}`);
      return v === 'accept' ? TopicValidatorResult.Accept : v === 'reject' ? TopicValidatorResult.Reject : TopicValidatorResult.Ignore;
    });
    ps.subscribe(topic);
  }

  unsubscribe(topic: string): void {
    const ps = this.libp2p.services.pubsub;
    ps.topicValidators.delete(topic);
    ps.unsubscribe(topic);
  }

  async publish(topic: string, data: Uint8Array): Promise<void> {
    if (this.stopped) return;
    try {
      await this.libp2p.services.pubsub.publish(topic, data);
    } catch (e) {
      // No peer yet, or a duplicate: anti-entropy covers what gossip misses.
      logger.debug(`publish on ${topic} failed: ${(e as Error).message}`);
    }
  }

  topicPeers(topic: string): string[] {
    return this.libp2p.services.pubsub.getSubscribers(topic).map((p) => p.toString());
  }

  // ------------------------------------------------------------ streams

  async handleSync(handler: (ch: Channel) => void): Promise<void> {
    await this.libp2p.handle(
      SYNC_PROTOCOL,
      ({ stream, connection }) => {
        handler(channel(stream, connection.remotePeer.toString(), (p, r) => this.reportInvalid(p, r)));
      },
      { maxInboundStreams: 8 },
    );
  }

  async openSync(peerId: string): Promise<Channel> {
    const stream = await this.libp2p.dialProtocol(peerIdFromString(peerId), SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) });
    return channel(stream, peerId, (p, r) => this.reportInvalid(p, r));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.neighbourLists.clear();
    this.neighbourListOf.clear();
    if (this.dialTimer) clearInterval(this.dialTimer);
    this.dialTimer = null;
    for (const t of this.quarantined.values()) clearTimeout(t);
    this.quarantined.clear();
    this.offences.clear();
    await this.libp2p.stop();
  }
}
