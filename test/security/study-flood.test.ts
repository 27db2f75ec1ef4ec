// Issue 15 F12: 256 empty studies from one member filled the global cap on studies and shut the victim
// off from every new study, across restarts. Now the cap is per creator (`maxStudiesPerCreator`,
// default 64; studies created here are not counted): past it, that creator's studies are refused
// when their genesis arrives (counted `offer:creator-full`, not charged to the relay, not offered
// again), and other creators' studies keep arriving. Real peer processes on 127.0.0.1: H (an honest
// creator and relay), A (the flooding member, connected to H only), V (a worker with a cap of 8 so
// the test stays small).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, tempDir, waitFor } from '../fixtures/hostile-member.js';

type Listed = { studies: { studyId: string; name: string; creator?: string }[] };

describe('F12: a member flooding the swarm with studies fills its own quota, not the victim\'s replica', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member;
  const vDir = () => join(dir.path, 'v');
  const cap = 8;

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    await A.call('manyStudies', { n: 40, prefix: 'junk' });
    await waitFor("H to hold A's 40 studies", 60_000, async () => (await H.call<Listed>('studies')).studies.length === 40);
    V = await Member.start({ dataDir: vDir(), join: H.addrs, maxStudiesPerCreator: cap });
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop()]);
    await dir?.remove();
  });

  it("the victim takes the cap of the member's studies, refuses the rest, and still gets a new honest study", async () => {
    await waitFor('V to refuse past the cap', 60_000, async () => (await V.counter('offer:creator-full')) >= 40 - cap);
    const fresh = (await H.call<{ studyId: string }>('create', { name: 'fresh' })).studyId;
    await H.call('run', { studyId: fresh, n: 2, seed: 1 });
    assert.equal((await V.call<{ studyId: string | null }>('await', { studyId: fresh, timeoutMs: 30_000 })).studyId, fresh);
    await waitFor("H's trials of the new study on V", 30_000, async () => (await V.trials(fresh)).length === 2);
    const listed = (await V.call<Listed>('studies')).studies;
    assert.equal(listed.filter((s) => s.creator === A.peerId).length, cap, `V holds ${cap} of A's studies`);
    assert.equal(await V.counter('rejected-no-genesis', 'no-genesis'), 0, 'refusals are not charged to the relay');
    await V.assertVitals('F12: the victim under the study flood', [H]);
  });

  it('across a restart the cap still holds and new studies still arrive', async () => {
    await V.stop();
    V = await Member.start({ dataDir: vDir(), join: H.addrs, maxStudiesPerCreator: cap });
    await A.call('manyStudies', { n: 10, prefix: 'more-junk' });
    const fresh2 = (await H.call<{ studyId: string }>('create', { name: 'fresh-2' })).studyId;
    assert.equal((await V.call<{ studyId: string | null }>('await', { studyId: fresh2, timeoutMs: 30_000 })).studyId, fresh2);
    await waitFor("V to see A's new studies offered and refuse them", 60_000, async () => (await V.counter('offer:creator-full')) >= 10);
    const listed = (await V.call<Listed>('studies')).studies;
    assert.equal(listed.filter((s) => s.creator === A.peerId).length, cap);
    assert.ok(listed.some((s) => s.name === 'fresh') && listed.some((s) => s.name === 'fresh-2'));
  });
});
