/**
 * The replica's side of checkpoints across peers: the blob store under `<dataDir>/checkpoints`, and the
 * view src/checkpoints/swarm.ts needs (the references valid records hold, trial owners, the connected
 * peers of a study, and recording a confirmed holder on this peer's own trial).
 */
import path from 'node:path';
import { BlobStore } from '../../checkpoints/blob-store.js';
import { toAttr } from '../../checkpoints/manager.js';
import { CHECKPOINTS_ATTR, checkpointRefs, type CheckpointRef } from '../../checkpoints/refs.js';
import { CheckpointSwarm, type PlacedRef, type SwarmView } from '../../checkpoints/swarm.js';
import type { PeerNode } from '../../net/node.js';
import type { Ctx } from './replica.js';

export const checkpointDirOf = (dataDir: string): string => path.join(dataDir, 'checkpoints');

export interface CheckpointHooks {
  /** Peers that announced the study (heartbeats). */
  studyPeers(studyId: string): Iterable<string>;
  /** Writes a system attr of this peer's trial (through the facade's checks and writer). */
  setSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void;
  /** A refused or broken request charged to `peer`. */
  rejected(peer: string, reason: string): void;
}

function refsOf(rec: { id: string; sa: Record<string, unknown> }): CheckpointRef[] {
  return rec.sa[CHECKPOINTS_ATTR] === undefined ? [] : checkpointRefs({ trialId: rec.id, systemAttrs: rec.sa });
}

/** Opens the store and starts serving and copying on `node`. */
export async function startCheckpointSwarm(ctx: Ctx, node: PeerNode, hooks: CheckpointHooks): Promise<CheckpointSwarm> {
  const store = await BlobStore.open(checkpointDirOf(ctx.opts.dataDir));
  const view: SwarmView = {
    selfId: ctx.peerId,
    refs() {
      const out: PlacedRef[] = [];
      for (const r of ctx.replicas.values()) {
        for (const rec of r.view.records.values()) {
          if (rec.sa[CHECKPOINTS_ATTR] === undefined) continue;
          for (const ref of refsOf(rec)) out.push({ studyId: r.studyId, owner: rec.o, ref });
        }
      }
      return out;
    },
    trial(studyId, trialId) {
      const rec = ctx.replicas.get(studyId)?.view.records.get(trialId);
      return rec ? { owner: rec.o, refs: refsOf(rec) } : null;
    },
    candidates(studyId) {
      const connected = node.connectedPeers();
      const inStudy = new Set(hooks.studyPeers(studyId));
      return [...connected.filter((p) => inStudy.has(p)), ...connected.filter((p) => !inStudy.has(p))];
    },
    connected: (peer) => node.isConnected(peer),
    addHolder(studyId, trialId, seq, peer) {
      const rec = ctx.replicas.get(studyId)?.view.records.get(trialId);
      if (!rec || rec.o !== ctx.peerId) return;
      const refs = refsOf(rec);
      const ref = refs.find((r) => r.seq === seq);
      // The keep rules may have dropped it meanwhile; then there is nothing to record.
      if (!ref || ref.holders.includes(peer) || ref.holders.length >= 32) return;
      ref.holders = [...ref.holders, peer];
      hooks.setSystemAttr(studyId, trialId, CHECKPOINTS_ATTR, refs.map(toAttr));
    },
    count: (reason) => ctx.count(reason),
    copyQuotaBytes: ctx.opts.ownerQuota.checkpointBytes,
    reject(peer, reason) {
      ctx.count(reason);
      hooks.rejected(peer, reason);
      node.reportInvalid(peer, reason);
    },
  };
  const swarm = new CheckpointSwarm(store, view);
  await swarm.start(node.libp2p);
  return swarm;
}

/** The study a trial belongs to, found in the replica (a checkpoint reference names only its trial). */
export function studyOfTrial(ctx: Ctx, trialId: string): string | null {
  for (const r of ctx.replicas.values()) if (r.view.records.has(trialId)) return r.studyId;
  return null;
}
