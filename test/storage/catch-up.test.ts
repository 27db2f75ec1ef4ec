// Catch-up of sealed shards (issue 8): a shard owner's voucher (one signature over the shard's change
// hashes) stands in for the per-record signature checks of the changes it lists, and a whole sealed
// shard new to a replica is stored sealed without an Automerge document. The voucher must only ever
// vouch for its owner's bytes; a replica that took a shard under a voucher serves it on with it, and
// loads it from disk after a restart.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { PrivateKey } from '@libp2p/interface';
import * as A from '@automerge/automerge';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import {
  RejectedChange,
  changeHash,
  decodeChanges,
  inspectShardChanges,
  makeVoucher,
  openVoucher,
  parseShardKey,
  seal,
  type TrialRecord,
} from '../../src/storage/replicated/schema.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';
import { writeTrials } from '../fixtures/trials.js';

const peer = inProcessPeers('peertune-catchup-', { heartbeatIntervalMs: 200, staleAfterMs: 60_000 });

async function identity(): Promise<{ key: PrivateKey; id: string }> {
  const key = (await generateKeyPair('Ed25519')) as unknown as PrivateKey;
  return { key, id: peerIdFromPrivateKey(key as never).toString() };
}

function record(owner: string, q: number, studyId: string): TrialRecord {
  return {
    k: 'trial', st: studyId, id: `${owner}:${q}`, o: owner, q, v: 0, s: 'COMPLETE', p: {}, d: {}, vals: [q], iv: [],
    ua: {}, sa: {}, t0: 1, t1: 2, claim: null, c: 1000 + q, ca: 1000 + q,
  };
}

/** One change putting `bytes` under `id` at the root of a fresh shard document. */
function change(id: string, bytes: Uint8Array): Uint8Array {
  const d = A.init<Record<string, Uint8Array>>();
  const h = A.getBackend(d);
  h.put('_root', id, bytes, 'bytes');
  h.commit();
  const c = h.getLastLocalChange()!;
  A.free(d);
  return c;
}

const expectReason = (reason: string) => (e: unknown) => e instanceof RejectedChange && e.reason === reason;

describe('shard vouchers', () => {
  it('vouch only for the owner\'s shard of one study, and only for the hashes they list', async () => {
    const owner = await identity();
    const other = await identity();
    const study = 's' + '1'.repeat(24);
    const shard = parseShardKey(`${owner.id}.0`)!;
    const c = change(`${owner.id}:0`, seal(owner.key, record(owner.id, 0, study)));
    const v = makeVoucher(owner.key, study, shard.key, [changeHash(c)])!;
    assert.deepEqual([...openVoucher(v, study, shard)], [decodeChanges([c])[0]!.hash]);
    // Signed by someone else, for another study, for another shard, or altered: refused.
    assert.throws(() => openVoucher(makeVoucher(other.key, study, shard.key, [changeHash(c)]), study, shard), expectReason('bad-voucher'));
    assert.throws(() => openVoucher(v, 's' + '2'.repeat(24), shard), expectReason('bad-voucher'));
    assert.throws(() => openVoucher(v, study, parseShardKey(`${owner.id}.1`)!), expectReason('bad-voucher'));
    const altered = Uint8Array.from(v);
    altered[altered.length - 1]! ^= 1;
    assert.throws(() => openVoucher(altered, study, shard), expectReason('bad-voucher'));
  });

  it('a listed change skips the record signature check, an unlisted one does not; every other rule holds', async () => {
    const owner = await identity();
    const study = 's' + '3'.repeat(24);
    const shard = parseShardKey(`${owner.id}.0`)!;
    const good = seal(owner.key, record(owner.id, 0, study));
    const broken = Uint8Array.from(good);
    broken[5]! ^= 0xff; // inside the signature
    const c = decodeChanges([change(`${owner.id}:0`, broken)]);
    const ctx = { studyId: study, shard, directions: 1, has: () => false, current: () => undefined };
    assert.throws(() => inspectShardChanges(ctx, c), expectReason('bad-signature'));
    const listed = new Set([c[0]!.hash!]);
    assert.equal(inspectShardChanges({ ...ctx, vouched: (h) => listed.has(h) }, c).records.size, 1);
    assert.throws(() => inspectShardChanges({ ...ctx, vouched: () => false }, c), expectReason('bad-signature'));
    // Vouched for, but in another owner's shard, or with the wrong number of values: still refused.
    const stranger = await identity();
    assert.throws(() => inspectShardChanges({ ...ctx, shard: parseShardKey(`${stranger.id}.0`)!, vouched: () => true }, c), expectReason('wrong-shard'));
    assert.throws(() => inspectShardChanges({ ...ctx, directions: 2, vouched: () => true }, c), expectReason('wrong-values'));
  });
});


const summary = (s: PeerStorage, sid: string) => s.getAllTrials(sid).map((t) => `${t.number}:${t.trialId}:${t.state}:${t.values?.[0]}:${t.params['x']}`);

describe('catch-up of sealed shards', { concurrency: 1 }, () => {
  it('a joiner stores whole sealed shards without documents, serves them on with their vouchers, and loads them after a restart', async () => {
    const a = await peer();
    const info = await a.createStudy({ studyName: 'sealed', directions: ['minimize'] });
    await writeTrials(a, info.studyId, 3 * 64 + 10); // three sealed shards and an open one
    await a.flush();
    const bDir = await peer.dir();
    const b = peer.adopt(await openPeerStorage({ dataDir: bDir, join: [a.multiaddrs()[0]!], heartbeatIntervalMs: 200, staleAfterMs: 60_000 }));
    await waitFor('b holds every trial', 30_000, () => b.getStudy('sealed') && b.getAllTrials(info.studyId).length === 3 * 64 + 10);
    assert.deepEqual(summary(b, info.studyId), summary(a, info.studyId));
    assert.equal(b.stats().counters['sync:accepted-sealed-shards'], 3);
    assert.ok((b.stats().counters['sync:vouched-shards'] ?? 0) >= 4, 'every shard of A came with its voucher');
    await a.close();

    // C reaches only B: the three sealed shards of A come from B, with the vouchers B stored.
    const c = await peer([b.multiaddrs()[0]!]);
    await waitFor('c holds every trial', 30_000, () => c.getStudy('sealed') && c.getAllTrials(info.studyId).length === 3 * 64 + 10);
    assert.deepEqual(summary(c, info.studyId), summary(b, info.studyId));
    assert.equal(c.stats().counters['sync:accepted-sealed-shards'], 3);
    assert.ok((c.stats().counters['sync:vouched-shards'] ?? 0) >= 3, 'B served the sealed shards it took under vouchers with them');
    assert.equal(Object.keys(c.stats().counters).filter((k) => k.startsWith('sync:rejected') || k === 'sync:bad-voucher').length, 0);

    // B restarted from its data dir: the sealed shards load from disk, the same trials under the same numbers.
    const before = summary(b, info.studyId);
    await c.close();
    await b.close();
    const b2 = peer.adopt(await openPeerStorage({ dataDir: bDir, heartbeatIntervalMs: 200, staleAfterMs: 60_000 }));
    assert.deepEqual(summary(b2, info.studyId), before);
  });
});
