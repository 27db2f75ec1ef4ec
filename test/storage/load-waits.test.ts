// loadStudy on a replica that has just joined (CI at 4f249a4: the Python client's load_study read "no
// trials are completed yet" from a study whose trials were still on their way). A study arriving from
// the network is listed as soon as its genesis is in, before its first sync has brought the trials;
// loadStudy, by id or by name, must wait for that sync, and a study the replica already held from its
// data dir must load at once, with its peer unreachable.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadStudy, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { writeTrials } from '../fixtures/trials.js';

const peer = inProcessPeers('peertune-load-waits-', { heartbeatIntervalMs: 200, staleAfterMs: 60_000 });
const N = 3000;

/** Resolves on the first event-loop turn at which `s` lists the study (polling at every immediate). */
async function listed(s: { listStudies(): { studyId: string }[] }, sid: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!s.listStudies().some((x) => x.studyId === sid)) {
    if (Date.now() > deadline) throw new Error(`study ${sid} was not listed within 30 s`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('loadStudy on a replica that has just joined', () => {
  it(`by id and by name, loaded the moment the study is listed, holds all ${N} trials; a held study loads at once offline`, async () => {
    setVerbosity('error');
    const H = await peer();
    const sid = (await H.createStudy({ studyName: 'arriving', directions: ['minimize'] })).studyId;
    await writeTrials(H, sid, N);
    await H.flush();

    const byId = await peer(H.multiaddrs());
    await listed(byId, sid);
    const a = await loadStudy({ studyId: sid, storage: byId });
    assert.equal(a.trials.length, N, 'loadStudy({ studyId }) waited for the first sync');
    assert.equal(a.bestValue, 0);

    const byName = await peer(H.multiaddrs());
    await listed(byName, sid);
    const b = await loadStudy({ studyName: 'arriving', storage: byName });
    assert.equal(b.trials.length, N, 'loadStudy({ studyName }) waited for the first sync');

    // The study is now held on disk: reopened with its only peer gone, it loads without waiting for a sync
    // that cannot come (the wait's timeout is 30 s; the load must not be anywhere near it).
    const dir = await peer.dir();
    const first = peer.adopt(await openPeerStorage({ dataDir: dir, join: H.multiaddrs(), heartbeatIntervalMs: 200 }));
    await listed(first, sid);
    await loadStudy({ studyId: sid, storage: first });
    await first.flush();
    await first.close();
    const addrs = H.multiaddrs();
    await H.close();
    const again = peer.adopt(await openPeerStorage({ dataDir: dir, join: addrs, heartbeatIntervalMs: 200 }));
    const t0 = Date.now();
    const c = await loadStudy({ studyId: sid, storage: again });
    const took = Date.now() - t0;
    assert.equal(c.trials.length, N);
    assert.ok(took < 10_000, `a study held on disk loaded in ${took} ms with its peer gone; it must not wait for the 30 s sync timeout`);
  });
});
