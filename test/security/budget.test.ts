// Issue 15 F8: budget exhaustion. `maxTrials` counted every RUNNING trial in the replica, so a live
// member holding 60 RUNNING trials that it never runs kept a `maxTrials: 50` worker from running any.
// Now the budget counts COMPLETE and PRUNED trials from everyone plus the worker's own RUNNING ones
// (Study.countTowardsBudget). Peers are processes on 127.0.0.1 (test/fixtures/victim-peer.ts).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { PeerProcess, tempDir, waitFor } from '../fixtures/attacker.js';

type Trials = { total: number; byOwner: Record<string, Record<string, number>> };

describe('budget exhaustion (issue 15 F8)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    PeerProcess.killAll();
    await dir.remove();
  });

  it('60 RUNNING trials held by a live member do not use up a budget of 50', async () => {
    const v = await PeerProcess.start({ dataDir: join(dir.path, 'v'), create: true, studyName: 'budget', heartbeatIntervalMs: 200, staleAfterMs: 2000 });
    const m = await PeerProcess.start({ dataDir: join(dir.path, 'm'), studyName: 'budget', join: [v.addrs[0]], heartbeatIntervalMs: 200, staleAfterMs: 2000 });
    await m.send({ cmd: 'hang', count: 60 });
    await waitFor(async () => (await v.send<Trials>({ cmd: 'trials' })).byOwner[m.peerId]?.['RUNNING'] === 60, "V sees M's 60 RUNNING trials");
    await v.send({ cmd: 'watch', peer: m.peerId });
    const ran = await v.send<{ done: number }>({ cmd: 'run', maxTrials: 50, timeout: 120 });
    const vt = await v.send<Trials>({ cmd: 'trials' });
    console.log(`F8: with 60 RUNNING trials held by a live member, a maxTrials 50 worker ran ${ran.done}; V holds ${JSON.stringify(vt.byOwner[v.peerId])} of its own and ${JSON.stringify(vt.byOwner[m.peerId])} of M's`);
    // Stored data, on the member's side too: V's 50 trials reached it.
    await waitFor(async () => (await m.send<Trials>({ cmd: 'trials' })).byOwner[v.peerId]?.['COMPLETE'] === 50, "M stores V's 50 trials");
    const vs = await v.stats();
    console.log(`F8: V's max gap for M ${vs.gaps[m.peerId]!.maxGapMs} ms`);
    assert.equal(ran.done, 50, 'the worker ran its whole budget');
    assert.deepEqual(vt.byOwner[v.peerId], { COMPLETE: 50 });
    // The attack was in effect the whole time: M stayed alive, its trials RUNNING (not stale).
    assert.deepEqual(vt.byOwner[m.peerId], { RUNNING: 60 });
    assert.ok(vs.gaps[m.peerId]!.maxGapMs < 2000, `V heard M at least every 2 s (max gap ${vs.gaps[m.peerId]!.maxGapMs} ms)`);
    // The budget still holds: another call runs nothing more.
    const again = await v.send<{ done: number }>({ cmd: 'run', maxTrials: 50, timeout: 30 });
    assert.equal(again.done, 0);
    await m.quit();
    await v.quit();
  });
});
