// Issue 15 F3, study-name takeover: a member created "iris" dated 1970 and, since the oldest study of
// a name won, a new worker joining "iris" put all its trials there. Now a name resolves to one study
// per replica: the one this replica created, else the one it ran trials in; otherwise two studies of
// the name are an error listing the ids, and --study-id / loadStudy's studyId choose. Real peer
// processes on 127.0.0.1: H (the honest creator), A (the member dating its study 1970), V (a new
// worker), and the CLI (through tsx, as a user's shell runs it).
import { describe, before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Member, repoRoot, tempDir, twoStudiesNamedIris, waitFor } from '../fixtures/hostile-member.js';
import { runCliFromSource } from '../fixtures/cli/helpers.js';

const cli = (args: string[]) => runCliFromSource(args, 60_000);

describe('F3: a study name resolves to one study per replica; a second study of the name is an error, not a takeover', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let H: Member, A: Member, V: Member;
  let honest = '';
  let fake = '';

  before(async () => {
    dir = await tempDir();
    // H's honest "iris"; A's "iris" dated 1970 (maximize), made offline, then joined through H.
    ({ H, A, honest, fake } = await twoStudiesNamedIris(dir.path));
  });

  after(async () => {
    await Promise.all([H?.stop(), A?.stop(), V?.stop()]);
    await dir?.remove();
  });

  it('the creator keeps resolving the name to its own study', async () => {
    const r = await H.call<{ studyId: string | null }>('resolve', { name: 'iris' });
    assert.equal(r.studyId, honest);
  });

  it('a new worker joining by name gets an error listing both ids, not the 1970 study', async () => {
    V = await Member.start({ dataDir: join(dir.path, 'v'), join: H.addrs });
    const err = await V.call('await', { name: 'iris', timeoutMs: 20_000 }).then(
      () => null,
      (e: Error) => e,
    );
    assert.ok(err, 'waiting for "iris" must not pick one of the two');
    assert.match(err.message, /AmbiguousStudyError|ambiguous/);
    assert.ok(err.message.includes(honest) && err.message.includes(fake), `both ids listed: ${err.message.slice(0, 400)}`);
    assert.ok(err.message.includes(`by ${A.peerId}`) && err.message.includes('1970-01-01'), 'with each creator and date, to choose by');
    const r = await V.call<{ error?: string; ids?: string[] }>('resolve', { name: 'iris' });
    assert.equal(r.error, 'AmbiguousStudyError');
    assert.deepEqual([...r.ids!].sort(), [honest, fake].sort());
  });

  it('choosing by id runs the trials in the chosen study, and the name then resolves to it on that replica', async () => {
    assert.equal((await V.call<{ studyId: string }>('await', { studyId: honest })).studyId, honest);
    await V.call('run', { studyId: honest, n: 5, seed: 2 });
    const mine = (await V.trials(honest)).filter((t) => t.owner === V.peerId && t.state === 'COMPLETE');
    assert.equal(mine.length, 5, "V's five trials are in the honest study");
    assert.equal((await V.trials(fake)).filter((t) => t.owner === V.peerId).length, 0, 'none went to the 1970 study');
    await waitFor("H to receive V's trials", 20_000, async () => (await H.trials(honest)).filter((t) => t.owner === V.peerId && t.state === 'COMPLETE').length === 5);
    assert.equal((await V.call<{ studyId: string }>('resolve', { name: 'iris' })).studyId, honest, 'the study V ran trials in is pinned by its own data');
    await V.assertVitals('F3: the worker through the takeover attempt', [H]);
  });

  it('the CLI: --study-name alone is refused with both ids; --study-id answers from the chosen study', async () => {
    const addr = H.addrs[0]!;
    const amb = await cli(['best-trial', '--study-name', 'iris', '--join', addr, '--wait', '15']);
    assert.notEqual(amb.code, 0, amb.stdout);
    assert.match(amb.stderr, /ambiguous/);
    assert.ok(amb.stderr.includes(honest) && amb.stderr.includes(fake), amb.stderr.slice(-800));
    const ok = await cli(['best-trial', '--study-id', honest, '--join', addr, '--wait', '15', '-f', 'json']);
    assert.equal(ok.code, 0, ok.stderr.slice(-800));
    const best = JSON.parse(ok.stdout) as { number: number; values: number[] };
    const trials = await H.trials(honest);
    const complete = trials.filter((t) => t.state === 'COMPLETE').map((t) => t.values![0]!);
    assert.equal(best.values[0], Math.min(...complete), 'the best of the honest (minimize) study');
    const both = await cli(['trials', '--study-name', 'iris', '--study-id', fake, '--join', addr, '--wait', '15', '-f', 'json']);
    assert.equal(both.code, 0, both.stderr.slice(-800));
    assert.deepEqual(JSON.parse(both.stdout).directions, ['maximize'], 'name and id that agree choose the other study');
    const listed = await cli(['studies', '--join', addr, '--wait', '15', '-f', 'json']);
    assert.equal(listed.code, 0, listed.stderr.slice(-800));
    const rows = JSON.parse(listed.stdout) as { study_id: string; creator: string }[];
    assert.equal(rows.find((r) => r.study_id === fake)?.creator, A.peerId, '`studies` names each creator');
    assert.equal(rows.find((r) => r.study_id === honest)?.creator, H.peerId);
    const wrong = await cli(['trials', '--study-id', 'not-an-id', '--join', addr]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /not a study id/);
  });

  it("a study of the name that only arrived from peers neither blocks nor is reused by this peer's create-study", async () => {
    const xDir = join(dir.path, 'x');
    const X = await Member.start({ dataDir: xDir, join: A.addrs });
    await X.call('await', { studyId: fake });
    await X.stop();
    const made = await cli(['create-study', '--study-name', 'iris', '--skip-if-exists', '--data-dir', xDir, '--listen', '/ip4/127.0.0.1/tcp/0']);
    assert.equal(made.code, 0, made.stderr.slice(-800));
    const id = /study id: (s[0-9a-f]{24})/.exec(made.stdout)?.[1];
    assert.ok(id && id !== fake && id !== honest, `a new study of its own: ${made.stdout}`);
    const listed = await cli(['trials', '--study-name', 'iris', '--data-dir', xDir, '-f', 'json']);
    assert.equal(listed.code, 0, listed.stderr.slice(-800));
    assert.deepEqual(JSON.parse(listed.stdout).directions, ['minimize'], 'the name now means the study created here, not the 1970 one (maximize)');
  });
});
