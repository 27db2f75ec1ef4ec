/**
 * Test hooks for tests and fuzzers that play a hostile or buggy peer. Not exported from the package
 * entry points: `import { ... } from 'src/storage/replicated/testing.js'` in tests only.
 * A member of the swarm holds the same documents as its peers, so the hooks hand out copies of them,
 * the peer's signing key, stored record bytes, and a way to put or publish raw changes WITHOUT
 * inspection (to check that other peers reject them on the gossip and sync paths).
 */
import * as A from '@automerge/automerge';
import type { PrivateKey } from '@libp2p/interface';
import { pack, unpackUntrusted } from '../../net/wire.js';
import { runSyncSession } from '../../net/sync.js';
import { topicOf } from './options.js';
import type { PeerStorage } from './index.js';
import { internalsOf } from './replica.js';
import { handleOf, shardKeyOf, type StudyDoc } from './schema.js';
import type { Replica } from './replica.js';

function replicaOf(s: PeerStorage, studyId: string): Replica {
  const i = internalsOf.get(s);
  if (!i) throw new Error('not a PeerStorage');
  const r = i.ctx.replicas.get(studyId);
  if (!r) throw new Error(`no replica of ${studyId}`);
  return r;
}

/** The shard key of a trial id (`owner:seq` -> `owner.bucket`). */
export function shardOfTrial(trialId: string): string {
  const i = trialId.lastIndexOf(':');
  return shardKeyOf(trialId.slice(0, i), Number(trialId.slice(i + 1)));
}

/** The peer's signing key (a member holds its own; the attacker forges with it). */
export function signingKey(s: PeerStorage): PrivateKey {
  return internalsOf.get(s)!.ctx.key;
}

/** A fresh copy of the study document (meta and attrs). */
export function studyDocCopy(s: PeerStorage, studyId: string): A.Doc<StudyDoc> {
  return A.load<StudyDoc>(replicaOf(s, studyId).study.save());
}

/** A fresh copy of a shard document (loaded from disk if the shard is sealed and evicted). */
export async function shardDocCopy(s: PeerStorage, studyId: string, shard: string): Promise<A.Doc<Record<string, Uint8Array>>> {
  const r = replicaOf(s, studyId);
  const sh = r.shards.get(shard);
  if (sh?.doc) return A.load(sh.handle!.save());
  const changes = await internalsOf.get(s)!.ctx.db.shardChanges(studyId, shard);
  const [doc] = A.applyChanges(A.init<Record<string, Uint8Array>>(), changes);
  return doc;
}

/** A copy of a shard document held in memory (null if sealed and evicted, or absent). */
export function openShardCopy(s: PeerStorage, studyId: string, shard: string): A.Doc<Record<string, Uint8Array>> | null {
  const sh = replicaOf(s, studyId).shards.get(shard);
  return sh?.doc ? A.load(sh.handle!.save()) : null;
}

/** The stored bytes of a trial record (its winning value in its shard). */
export async function trialBytes(s: PeerStorage, studyId: string, trialId: string): Promise<Uint8Array | undefined> {
  const doc = await shardDocCopy(s, studyId, shardOfTrial(trialId));
  const v = A.getBackend(doc).get('_root', trialId);
  return v instanceof Uint8Array ? v : undefined;
}

/** Heads of every shard and of the study document, for "nothing changed" checks. */
export function replicaHeads(s: PeerStorage, studyId: string): string {
  const r = replicaOf(s, studyId);
  return [r.study.getHeads().join(','), ...[...r.shards.values()].filter((x) => x.changes > 0).map((x) => `${x.key}:${x.heads.join(',')}`).sort()].join('|');
}

/**
 * Puts a raw change into a shard (or the study document, shard null) WITHOUT inspection and
 * optionally gossips it the way peers do.
 */
export async function injectChange(s: PeerStorage, studyId: string, shard: string | null, change: Uint8Array, opts: { publish: boolean }): Promise<void> {
  const i = internalsOf.get(s)!;
  const r = replicaOf(s, studyId);
  if (shard === null) handleOf(r.studyDoc).applyChanges([change]);
  else {
    const sh = r.shard(shard)!;
    if (!sh.doc && sh.changes > 0) await i.writer.reopen(r, sh);
    sh.open().applyChanges([change]);
    sh.changes++;
    sh.unsaved.push(change);
    sh.refreshHeads();
  }
  r.invalidateDigest();
  if (opts.publish && i.ctx.node) await i.ctx.node.publish(topicOf(studyId), gossipMessage(shard, [change]));
}

/** Publishes arbitrary bytes on a study's gossip topic (fuzzing the receive path). */
export async function publishRaw(s: PeerStorage, studyId: string, data: Uint8Array): Promise<void> {
  replicaOf(s, studyId);
  await internalsOf.get(s)!.ctx.node?.publish(topicOf(studyId), data);
}

/** A gossip payload as peers publish it: study-document changes (shard null) or one shard's. */
export function gossipMessage(shard: string | null, changes: Uint8Array[]): Uint8Array {
  return shard === null ? pack({ c: changes }) : pack({ t: [[shard, changes]] });
}

/**
 * Plays a peer that asks `peerId` for the whole of a study by catch-up (a summary with no heads) and
 * throws away what it gets, as an abusive asker would (issue 15 F13). Resolves with the bytes of
 * catch-up pieces received in the session and whether it ended normally.
 */
export async function askWholeStudy(s: PeerStorage, peerId: string, studyId: string): Promise<{ bytes: number; finished: boolean }> {
  const { ctx } = internalsOf.get(s)!;
  if (!ctx.node) throw new Error('no network');
  const ch = await ctx.node.openSync(peerId);
  let bytes = 0;
  const finished = await runSyncSession<{ sent: boolean }>(
    ch,
    {
      catalog: () => [[studyId, '']],
      offer: () => false,
      has: (id) => id === studyId,
      newState: () => ({ sent: false }),
      generate: (_id, st) => {
        if (st.sent) return null;
        st.sent = true;
        return pack({ m: [], h: [] });
      },
      receive: (_id, _st, m) => {
        const msg = unpackUntrusted(m, { maxBytes: 1 << 24, maxDepth: 4, maxNodes: 1 << 20, maxStringLength: 1 << 22 }) as Record<string, unknown>;
        if (msg['p'] !== undefined) bytes += m.byteLength;
      },
      synced: () => {},
      count: () => {},
    },
    true,
    { maxFrameBytes: 1 << 24, maxStudies: 4, sessionTimeoutMs: 60_000 },
  );
  return { bytes, finished };
}

/** Per peer whose neighbour list (from its heartbeats) this peer's relay filter holds: the list's length (net/node.ts). */
export function neighbourLists(s: PeerStorage): Map<string, number> {
  return internalsOf.get(s)!.ctx.node?.neighbourListSizes() ?? new Map();
}

/** This peer's gossipsub view of a study topic: its mesh peers, and the score it gives each connected peer. */
export function gossipView(s: PeerStorage, studyId: string): { mesh: string[]; scores: Map<string, number> } {
  const node = internalsOf.get(s)!.ctx.node;
  if (!node) throw new Error('no network');
  const ps = node.libp2p.services.pubsub;
  const scores = new Map<string, number>();
  for (const id of node.connectedPeers()) scores.set(id, ps.score.score(id));
  return { mesh: ps.getMeshPeers(topicOf(studyId)), scores };
}
