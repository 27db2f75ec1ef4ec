// One trial, one number (issue 8): the numbering's race (view.ts) made a trial's log line show a
// number that moved a moment later, when a trial of another peer created just before it arrived. The
// line now waits until the numbers are settled (PeerStorage.whenNumbersSettled). Here the race is made
// to happen: B, which has run a trial already, creates one while the two peers are cut apart, A then runs one (later by the clock,
// so it sorts after B's) and tells it; A's line must name the number the trial ends with, not the one
// it had when told, and so must the trial tell() returns.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createStudy, loadStudy, setLogSink, setVerbosity } from '../../src/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

const peer = inProcessPeers('peertune-settled-', { heartbeatIntervalMs: 500, staleAfterMs: 30_000 });

it("a finished trial's log line and tell() wait for a trial of another peer created before it, and show the final number", async () => {
  const lines: string[] = [];
  const sink = setLogSink((l) => lines.push(l));
  setVerbosity('info');
  try {
    const A = await peer();
    const study = await createStudy({ studyName: 'settled', storage: A });
    const B = await peer(A.multiaddrs());
    await loadStudy({ studyName: 'settled', storage: B });
    // Each has heard the other's heartbeat for the study (B is a live peer of it for A).
    await waitFor('heartbeats both ways', 20_000, () => A.peers!(study.studyId).some((p) => p.peerId === B.peerId) && B.peers!(study.studyId).some((p) => p.peerId === A.peerId));
    // B has run a trial already (a peer with none here is not waited for: view.ts, the one case left).
    const first = B.createTrial(study.studyId);
    await B.finishTrial(study.studyId, first.trialId, 'COMPLETE', [3]);
    await waitFor("B's first trial on A", 20_000, () => A.getAllTrials(study.studyId).some((x) => x.trialId === first.trialId && x.state === 'COMPLETE'));
    await A.blockPeers([B.peerId]);
    await B.blockPeers([A.peerId]);
    const early = B.createTrial(study.studyId);
    // A later millisecond: the clocks' claims then order B's trial first (in the same one the trial ids decide).
    await new Promise((r) => setTimeout(r, 5));
    const t = study.ask();
    t.suggestFloat('x', 0, 1);
    // tell() returns the trial once its number is settled, as the line waits (study.ts settledTrial).
    const telling = study.tell(t, 0.5);
    await waitFor('the tell applied on A', 20_000, () => A.getTrial(study.studyId, t.trialId).state === 'COMPLETE');
    assert.equal(A.getTrial(study.studyId, t.trialId).number, 1, "told while B's second trial is away: number 1 for now");
    A.unblockPeers([B.peerId]);
    B.unblockPeers([A.peerId]);
    B.createTrial(study.studyId); // B goes on working: its next trial sorts after A's
    const told = await telling;
    const line = await waitFor("A's log line for its trial", 20_000, () => lines.find((l) => /Trial \d+ finished with value: 0\.5 /.test(l)));
    await waitFor("B's trial on A", 20_000, () => A.getAllTrials(study.studyId).some((x) => x.trialId === early.trialId));
    const final = A.getTrial(study.studyId, t.trialId).number;
    assert.equal(final, 2, "B's second trial, created earlier, took number 1");
    assert.match(line, new RegExp(`Trial ${final} finished with value: 0\\.5 `), `the line shows the final number: ${line}`);
    assert.equal(told.number, final, 'tell() returned the final number');
    assert.equal(A.stats().counters['numbers:settle-timeout'] ?? 0, 0, 'settled, not timed out');
  } finally {
    setLogSink(sink);
    setVerbosity('error');
  }
});
