// Issue 15, user attrs: study user attrs (`u:` keys) are last-writer-wins by the time their writer
// signs, and any member may write them (as Optuna's set_user_attr), so a member dating its write far in
// the future won against every later honest write. Now a study attr record dated more than
// MAX_ATTR_AHEAD_MS (60 s) ahead of the receiver's clock is refused at merge (`gossip:future-attr`,
// `sync:future-attr`), and within the allowance an honest later write still wins (the writer dates its
// record after the one it replaces). Real peer processes on 127.0.0.1: H (honest creator), A (a
// member), V (joined to H), and J, a late joiner that catches up by sync from both H and A.
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, tempDir, waitFor } from '../fixtures/hostile-member.js';
import { MAX_ATTR_AHEAD_MS } from '../../src/storage/replicated/schema.js';

describe('issue 15: a member cannot pin a study user attr with a far-future time', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member, J: Member | undefined;
  let sid = '';
  const attr = async (m: Member, key: string) => (await m.call<{ value: unknown }>('userAttr', { studyId: sid, key })).value;

  before(async () => {
    dir = await tempDir();
    H = await Member.start({ dataDir: join(dir.path, 'h') });
    sid = (await H.call<{ studyId: string }>('create', { name: 'attrs' })).studyId;
    A = await Member.start({ dataDir: join(dir.path, 'a'), join: H.addrs });
    V = await Member.start({ dataDir: join(dir.path, 'v'), join: H.addrs });
    await Promise.all([A.call('await', { studyId: sid }), V.call('await', { studyId: sid })]);
    await V.waitToHear([H]); // vitals count heartbeat gaps from a first hearing
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop(), J?.stop()]);
    await dir?.remove();
  });

  it('within the allowance a member may write ahead of the clock, and an honest later write still wins', async () => {
    // Runs first: A's later study-document changes depend on this one, so it must be accepted.
    assert.equal(MAX_ATTR_AHEAD_MS, 60_000);
    await A.call('poisonSetting', { studyId: sid, kind: 'u', key: 'near', value: 'member', ts: Date.now() + 30_000 });
    await waitFor("A's write 30 s ahead on V", 20_000, async () => (await attr(V, 'near')) === 'member');
    await H.call('setAttr', { studyId: sid, key: 'near', value: 'honest-later' });
    await waitFor("H's later write on V", 20_000, async () => (await attr(V, 'near')) === 'honest-later');
    assert.equal(await attr(H, 'near'), 'honest-later');
  });

  it('by gossip: a write dated a day ahead is refused and counted; the honest write after it is what every honest peer reads', async () => {
    const before = (await H.counters())['gossip:future-attr'] ?? 0;
    await A.call('poisonSetting', { studyId: sid, kind: 'u', key: 'lr', value: 'evil', ts: Date.now() + 24 * 3600_000 });
    await waitFor('H to refuse the far-future write', 20_000, async () => ((await H.counters())['gossip:future-attr'] ?? 0) > before);
    // The honest write after it (a sentinel too: it travels H -> V as A's write would have).
    await H.call('setAttr', { studyId: sid, key: 'lr', value: 'honest' });
    await waitFor("H's write on V", 20_000, async () => (await attr(V, 'lr')) === 'honest');
    assert.equal(await attr(H, 'lr'), 'honest');
    // Not even a replica that holds the far-future record (the member's own, as one stored before this
    // rule would) reads it: else its next write would be dated after it, and refused by everyone.
    await waitFor("H's write read on A, which holds the far-future record", 20_000, async () => (await attr(A, 'lr')) === 'honest');
    await V.assertVitals('user attrs: V while A wrote ahead', [H]);
  });

  it('by sync: a late joiner catching up from the member refuses the same record and reads the honest value', async () => {
    J = await Member.start({ dataDir: join(dir.path, 'j'), join: [...A.addrs, ...H.addrs] });
    await J.call('await', { studyId: sid });
    await waitFor("J to refuse A's far-future record in a catch-up", 30_000, async () => ((await J!.counters())['sync:future-attr'] ?? 0) > 0);
    await waitFor("H's value on J", 20_000, async () => (await attr(J!, 'lr')) === 'honest');
    assert.equal(await attr(J, 'near'), 'honest-later');
  });
});
