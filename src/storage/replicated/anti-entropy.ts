/**
 * Anti-entropy: heartbeats carry, per study, a digest of the replica (study document and every
 * shard's heads) and its change count. A peer whose count stays above ours for longer than gossip
 * needs to deliver (two heartbeats) holds changes we lack: we run a catch-up session with it
 * (sync-adapter.ts), which sends only the shards that differ. Equal counts with different digests
 * (replicas that diverged) are settled the same way. Each study's entry also carries the sender's
 * frontier for the numbering (its own trials here and the least claim of any it creates next: view.ts
 * settledFor), which a finished trial's log line waits on. Also: the table of peers heard from (addresses,
 * studies), study offers (empty replicas for studies peers announce), and housekeeping of what
 * strangers can make us hold.
 */
import * as A from '@automerge/automerge';
import { logger } from '../../logging.js';
import { HEARTBEAT_TOPIC, decodeHeartbeat, encodeHeartbeat } from '../../net/liveness.js';
import type { CatalogEntry } from '../../net/sync.js';
import type { WireError } from '../../net/wire.js';
import { EMPTY_REPLICA_MAX_AGE_MS, MAX_EMPTY_PER_PEER, MAX_EMPTY_REPLICAS, MAX_KNOWN_PEERS, MAX_REPLICAS, MAX_STUDIES, PENDING_MAX_AGE_MS, STUDY_ID, topicOf } from './options.js';
import { Replica, type Ctx } from './replica.js';
import type { StudyDoc } from './schema.js';

export class AntiEntropy {
  readonly peerAddrs = new Map<string, string[]>();
  /** Per peer: the studies it announced, each with its advertised replica state (`<digest>:<changes>:<own trials>:<next claim>`; older peers send the first two). */
  readonly peerStudies = new Map<string, Map<string, string>>();
  deleted = new Set<string>();
  /** Per peer: the gap between gossip messages it asks for in its heartbeats (pacing.ts). */
  readonly peerGaps = new Map<string, number>();
  /** The gap this peer asks for (set by the storage; pacing.ts). */
  askGap: () => number | undefined = () => undefined;
  /** Every how many heartbeat intervals peers heartbeat, for the swarm's size (pacing.ts heartbeatEvery). */
  heartbeatEvery: () => number = () => 1;

  constructor(
    private readonly ctx: Ctx,
    private readonly subscribe: (r: Replica) => void,
    private readonly syncWith: (peerId: string) => void,
  ) {}

  private get grace(): number {
    // Plus the gap this peer asks between gossip messages, four times: a busy swarm batches its gossip (pacing.ts).
    // Times every how many intervals peers heartbeat in a swarm this big (pacing.ts heartbeatEvery).
    return Math.max(1500, 2 * this.ctx.opts.heartbeatMs * this.heartbeatEvery()) + 4 * (this.askGap() ?? 0);
  }

  async sendHeartbeat(): Promise<void> {
    const node = this.ctx.node;
    if (!node || this.ctx.closed) return;
    const studies: [string, string, string][] = [];
    // Past MAX_STUDIES, the studies created or run here are announced first (issue 15 F12: others' floods
    // of studies must not push this peer's own work out of its heartbeat).
    const mine = (r: Replica): number => Number(r.meta?.creator === this.ctx.peerId || r.seq > 0);
    const all = [...this.ctx.replicas.values()];
    for (const r of all.length > MAX_STUDIES ? all.sort((a, b) => mine(b) - mine(a)) : all) {
      if (!r.meta) continue;
      const d = r.digest();
      // Then this peer's own trials here and the least claim of any it creates next (view.ts settledFor).
      studies.push([r.studyId, r.name, `${d.digest}:${d.count}:${r.view.trialsOf(this.ctx.peerId)}:${r.view.promiseClaim()}`]);
    }
    await node.publish(HEARTBEAT_TOPIC, encodeHeartbeat({ ts: Date.now(), addrs: node.multiaddrs().slice(0, 16), studies: studies.slice(0, MAX_STUDIES), neighbours: node.neighbourTags(), gap: this.askGap() }));
  }

  onHeartbeat(from: string, data: Uint8Array, via: string): 'accept' | 'reject' | 'ignore' {
    const ctx = this.ctx;
    if (ctx.closed) return 'ignore';
    let hb;
    try {
      hb = decodeHeartbeat(data);
    } catch (e) {
      ctx.count(`heartbeat:${(e as WireError).reason ?? 'schema'}`);
      return 'reject';
    }
    // Fresh, newer than the author's last, within its rate and its relay's (net/liveness.ts, issue 15 F9-F11).
    const verdict = ctx.liveness.admitHeartbeat(from, via, hb.ts, { isConnected: (id) => ctx.node?.isConnected(id) ?? false, count: ctx.count });
    if (verdict !== 'accept') return verdict;
    this.peerAddrs.set(from, hb.addrs);
    if (hb.gap !== undefined) this.peerGaps.set(from, hb.gap);
    else this.peerGaps.delete(from);
    ctx.node?.want(from, hb.addrs, false);
    if (hb.neighbours) ctx.node?.setNeighbours(from, hb.neighbours);
    const studies = new Map<string, string>();
    const now = Date.now();
    let needSync = false;
    let frontiers = false;
    for (const [id, name, state] of hb.studies) {
      studies.set(id, state);
      const r = ctx.replicas.get(id);
      if (!r) {
        // Charged to the connection it came through: identities are free, connections are not.
        if (this.offer([id, name], via)) needSync = true;
        continue;
      }
      const [digest, countText, ownText, clockText] = state.split(':');
      const count = Number(countText);
      const own = Number(ownText);
      const clock = Number(clockText);
      // Its frontier (view.ts settledFor): bounded by the peers remembered; what a liar says only moves when this replica logs.
      if (from !== ctx.peerId && Number.isSafeInteger(own) && own >= 0 && Number.isSafeInteger(clock) && (r.frontiers.has(from) || r.frontiers.size < MAX_KNOWN_PEERS)) {
        r.frontiers.set(from, { n: own, clock, since: r.frontiers.get(from)?.since ?? now });
        frontiers = true;
      }
      const mine = r.digest();
      if (digest === mine.digest || !Number.isSafeInteger(count)) {
        r.remote.delete(from);
        continue;
      }
      if (count < mine.count) {
        // They lack something of ours: they catch up from us when they see our count.
        r.remote.delete(from);
        continue;
      }
      const seen = r.remote.get(from);
      // count > ours: a gap gossip should have closed within the grace period (what they had then, we
      // still lack). Equal counts, different digests: replicas that diverged, for as long.
      const fresh = !seen || (count > mine.count ? mine.count >= seen.count : seen.digest !== digest || seen.count !== count);
      if (fresh) r.remote.set(from, { since: now, count, digest });
      else if (now - seen!.since > this.grace) {
        needSync = true;
        r.remote.delete(from);
      }
    }
    this.peerStudies.set(from, studies);
    if (needSync && ctx.node?.isConnected(from)) this.syncWith(from);
    if (frontiers) ctx.notify();
    return 'accept';
  }

  /** Creates an empty replica for a study a peer has (it fills in through sync); false if refused. */
  offer(entry: CatalogEntry, from: string): boolean {
    const ctx = this.ctx;
    const [id, name] = entry;
    if (ctx.replicas.has(id)) return true;
    if (this.deleted.has(id) || !STUDY_ID.test(id) || ctx.closed) return false;
    let empty = 0;
    let fromThisPeer = 0;
    for (const x of ctx.replicas.values()) {
      if (x.meta) continue;
      empty++;
      if (x.offeredBy === from) fromThisPeer++;
    }
    // Empty replicas are capped per offering peer too, so one peer's made-up catalog cannot crowd out real studies.
    // Studies with a genesis are capped per creator when it arrives (ReplicaPolicy.admit, issue 15 F12); MAX_REPLICAS only bounds memory.
    if (empty >= MAX_EMPTY_REPLICAS || fromThisPeer >= MAX_EMPTY_PER_PEER || ctx.replicas.size - empty >= MAX_REPLICAS) {
      ctx.count('offer:refused-full');
      return false;
    }
    const r = new Replica(id, name, A.init<StudyDoc>(), ctx.peerId, ctx.policy);
    r.offeredBy = from;
    ctx.replicas.set(id, r);
    this.subscribe(r);
    logger.debug(`Learned of study ${name} (${id}) from ${from}`);
    return true;
  }

  /** Drops what strangers can make us hold: empty replicas that never got a genesis, stale pending changes, forgotten peers. */
  housekeeping(): void {
    const ctx = this.ctx;
    const now = Date.now();
    for (const r of [...ctx.replicas.values()]) {
      if (!r.meta && now - r.createdAt > EMPTY_REPLICA_MAX_AGE_MS) {
        r.cancelTimers();
        ctx.replicas.delete(r.studyId);
        ctx.node?.unsubscribe(topicOf(r.studyId));
        ctx.count('offer:expired-empty');
      } else if (r.pendingSince !== null && now - r.pendingSince > PENDING_MAX_AGE_MS) {
        ctx.count('gossip:pending-expired');
        r.pending.clear();
        r.pendingBytes = 0;
        r.pendingSince = null;
      }
    }
    if (this.peerAddrs.size > MAX_KNOWN_PEERS) {
      const byAge = [...this.peerAddrs.keys()].sort((a, b) => (ctx.liveness.get(a) ?? 0) - (ctx.liveness.get(b) ?? 0));
      for (const id of byAge.slice(0, this.peerAddrs.size - MAX_KNOWN_PEERS)) {
        this.peerAddrs.delete(id);
        this.peerStudies.delete(id);
        this.peerGaps.delete(id);
        ctx.liveness.forget(id);
      }
    }
  }
}
