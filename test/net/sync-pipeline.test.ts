// Pipelined catch-up (issue 8): a peer whose catalog announces a window `w` gets, after each piece it
// answers, up to w more pieces that need no answer (`more` frames), so the server encodes the next
// pieces while the receiver checks the last. Still paced by the receiver: no more than (1 + w) pieces
// per answer, none to a peer that does not announce a window (an older one), and a `more` frame goes
// through every check a `sync` frame does. Against a real replica on 127.0.0.1, spoken to by a libp2p
// node of our own (the attacker toolkit) that writes raw frames and reads what comes back.
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { frame, pack } from '../../src/net/wire.js';
import { PIPELINE } from '../../src/net/sync.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { Attacker, counters, diffCounters, muteLogs, openPeer, tempDir } from '../fixtures/attacker.js';

describe('pipelined catch-up pieces', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let V: PeerStorage;
  let atk: Attacker;
  let unmute: () => void;
  let sid = '';
  const name = 'piped';
  const TRIALS = 24 * 64; // 24 sealed shards: a dozen pieces of 256 KiB

  before(async () => {
    unmute = muteLogs();
    dir = await tempDir();
    V = await openPeer(join(dir.path, 'v'), { quarantine: false });
    sid = (await V.createStudy({ studyName: name, directions: ['minimize'] })).studyId;
    const dist = { type: 'float', low: 0, high: 1, log: false, step: null } as const;
    for (let made = 0; made < TRIALS; ) {
      const ids: string[] = [];
      for (let k = 0; k < 256 && made < TRIALS; k++, made++) {
        const t = V.createTrial(sid);
        // Params of a few hundred bytes, so the shards fill several pieces.
        V.setTrialParams(sid, t.trialId, Object.fromEntries(Array.from({ length: 12 }, (_, p) => [`p${p}`, Math.random()])), Object.fromEntries(Array.from({ length: 12 }, (_, p) => [`p${p}`, dist])));
        ids.push(t.trialId);
      }
      await new Promise((r) => setImmediate(r));
      await Promise.all(ids.map((id) => V.finishTrial(sid, id, 'COMPLETE', [Math.random()])));
    }
    await V.flush();
    atk = await Attacker.start();
    await atk.connect(V.multiaddrs());
  });

  after(async () => {
    await atk?.stop();
    await V?.close();
    await dir?.remove();
    unmute?.();
  });

  const cat = (extra: Record<string, unknown> = {}): Uint8Array => frame(pack({ t: 'cat', s: [[sid, name]], ...extra }));
  /** A summary holding nothing: the victim has everything to send. */
  const emptySummary = (): Uint8Array => frame(pack({ t: 'sync', s: sid, m: pack({ m: [], h: [] }) }));
  const answer = (): Uint8Array => frame(pack({ t: 'sync', s: sid, m: null }));
  const pieces = (frames: Record<string, unknown>[]) => frames.filter((f) => (f['t'] === 'sync' || f['t'] === 'more') && f['m'] instanceof Uint8Array).length - 1; // less its summary

  it('announces its window, and sends at most w more pieces after each piece it answers', async () => {
    assert.ok(PIPELINE >= 1);
    const once = await atk.rawSync(V.peerId, [cat({ w: PIPELINE }), emptySummary()], 2500);
    const theirCat = once.frames.find((f) => f['t'] === 'cat');
    assert.equal(theirCat?.['w'], PIPELINE, 'the victim announces its own window');
    const kinds = once.frames.filter((f) => f['t'] === 'sync' || f['t'] === 'more').map((f) => f['t']);
    // Its summary, the answer to ours (a piece), then exactly w pieces more; nothing else until we answer.
    assert.deepEqual(kinds, ['sync', 'sync', ...Array(PIPELINE).fill('more')], JSON.stringify(kinds));

    // Two answers (nulls: we have nothing to send) release (1 + w) pieces each, no more.
    const thrice = await atk.rawSync(V.peerId, [cat({ w: PIPELINE }), emptySummary(), answer(), answer()], 2500);
    assert.equal(pieces(thrice.frames), 3 * (1 + PIPELINE), 'pieces per frame of ours');
  });

  it('a peer that announces no window (an older one) or a window of 0 gets the lock-step protocol', async () => {
    for (const extra of [{}, { w: 0 }]) {
      const res = await atk.rawSync(V.peerId, [cat(extra), emptySummary(), answer()], 2500);
      assert.ok(!res.frames.some((f) => f['t'] === 'more'), `no more frame for ${JSON.stringify(extra)}`);
      assert.equal(pieces(res.frames), 2, 'one piece per frame of ours');
    }
  });

  it('a window above its own is taken as its own', async () => {
    const res = await atk.rawSync(V.peerId, [cat({ w: 64 }), emptySummary()], 2500);
    assert.equal(res.frames.filter((f) => f['t'] === 'more').length, PIPELINE);
  });

  it('a malformed window ends the session as a malformed catalog', async () => {
    for (const w of [-1, 1.5, 65, 'x', [2]]) {
      const before = counters(V);
      const res = await atk.rawSync(V.peerId, [cat({ w }), emptySummary()], 2500);
      assert.ok(res.ended, `the victim ended the session for w=${JSON.stringify(w)}`);
      assert.equal(diffCounters(before, counters(V))['sync:schema'], 1, `counted for w=${JSON.stringify(w)}`);
      assert.ok(!res.frames.some((f) => f['t'] === 'sync' && f['s'] === sid && f['m'] instanceof Uint8Array && f['m'].byteLength > 1000), 'and served nothing');
    }
  });

  it('a more frame is checked as a sync frame is: a bad piece in one is refused and counted', async () => {
    const before = counters(V);
    const res = await atk.rawSync(V.peerId, [cat({ w: PIPELINE }), emptySummary(), frame(pack({ t: 'more', s: sid, m: Uint8Array.of(0xc1, 0xc1) }))], 2500);
    assert.ok(res.ended, 'the session ended');
    const d = diffCounters(before, counters(V));
    assert.equal(d['sync:undecodable'], 1, JSON.stringify(d));
    const malformed = await atk.rawSync(V.peerId, [cat({ w: PIPELINE }), emptySummary(), frame(pack({ t: 'more', s: sid, m: null }))], 2500);
    assert.ok(malformed.ended, 'a more frame without a piece ends the session');
  });

  it('a more frame for a study the victim does not have is ignored, and the session goes on', async () => {
    const before = counters(V);
    const other = 's' + '9'.repeat(24);
    const res = await atk.rawSync(
      V.peerId,
      [cat({ w: PIPELINE }), frame(pack({ t: 'more', s: other, m: pack({ p: [] }) })), emptySummary()],
      2500,
    );
    // The sentinel after it: our summary is answered with pieces.
    assert.ok(pieces(res.frames) >= 1, 'the victim still serves the session');
    const d = diffCounters(before, counters(V));
    assert.deepEqual(Object.keys(d).filter((k) => /rejected|schema|undecodable/.test(k)), [], JSON.stringify(d)); // sync:error is our stream torn down at the end (not charged)
  });
});
