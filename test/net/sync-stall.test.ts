// A sync session's idle timeout (no complete frame from the remote for syncIdleTimeoutMs ends the
// session, charged to the remote) must not fire because this process itself was stalled: frames may be
// waiting unread behind the timer. Under load the heal bench lost 15 to 30 s to sessions ended that
// way. Two real peers in this process; the event loop is blocked during their catch-up.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';
import { writeTrials } from '../fixtures/trials.js';

const peer = inProcessPeers('peertune-sync-stall-', { heartbeatIntervalMs: 200, staleAfterMs: 60_000, syncIdleTimeoutMs: 1500 });


describe('sync idle timeout', () => {
  it('a session is not ended (nor the remote charged) when this process stalled past the timeout', async () => {
    const a = await peer();
    const info = await a.createStudy({ studyName: 'stall', directions: ['minimize'] });
    await writeTrials(a, info.studyId, 20 * 64);
    await a.flush();
    const b = await peer([a.multiaddrs()[0]!]);
    // Block the loop while the joiner's first session runs (both peers live in this loop).
    await waitFor('a session started', 20_000, () => (b.stats().counters['sync:sessions-started'] ?? 0) >= 1 || (b.stats().counters['sync:sessions-served'] ?? 0) >= 1);
    const end = Date.now() + 3500;
    while (Date.now() < end) { /* stalled */ }
    await waitFor('b holds every trial', 30_000, () => b.getStudy('stall') && b.getAllTrials(info.studyId).length === 20 * 64);
    for (const s of [a, b]) assert.equal(s.stats().counters['sync:idle-timeout'] ?? 0, 0, JSON.stringify(s.stats().counters));
    const late = (a.stats().counters['stall:sync-idle-late'] ?? 0) + (b.stats().counters['stall:sync-idle-late'] ?? 0);
    console.log(`# idle timers that fired late and were re-armed: ${late}`);
  });
});
