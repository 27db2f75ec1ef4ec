// Study.optimize starts the next trial while the last one's finished state is being written (its
// finishTrial resolves once durable); at most one such write is pending, callbacks see the finished
// trial, a failure is not overlapped, and optimize resolves only after every write has ended.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStudy, InMemoryStorage, RandomSampler, setVerbosity } from '../src/index.js';

setVerbosity('warning');

/**
 * A storage whose finishTrial applies the state at once (as the replicated one does) and resolves
 * only when released; a releaser frees the oldest pending write every few ms.
 */
class GatedStorage extends InMemoryStorage {
  pending: (() => void)[] = [];
  maxPending = 0;
  released = 0;
  #timer = setInterval(() => {
    const r = this.pending.shift();
    if (r) {
      this.released++;
      r();
    }
  }, 5);
  override async finishTrial(...args: Parameters<InMemoryStorage['finishTrial']>): Promise<void> {
    await super.finishTrial(...args);
    await new Promise<void>((r) => {
      this.pending.push(r);
      this.maxPending = Math.max(this.maxPending, this.pending.length);
    });
  }
  stop(): void {
    clearInterval(this.#timer);
  }
}

test('the next trial runs while the last one is written; two writes at most; optimize ends after the last write', async (t) => {
  const storage = new GatedStorage();
  t.after(() => storage.stop());
  const study = await createStudy({ storage, sampler: new RandomSampler({ seed: 3 }) });
  const log: string[] = [];
  await study.optimize(
    (tr) => {
      log.push(`run ${tr.number} pending=${storage.pending.length}`);
      return tr.suggestFloat('x', 0, 1);
    },
    { nTrials: 6, callbacks: [(_s, tr) => void log.push(`cb ${tr.number} ${tr.state}`)] },
  );
  // optimize resolved only once every write had ended.
  assert.equal(storage.released, 6);
  assert.equal(storage.pending.length, 0);
  // Trial k+1 ran while trial k's write was pending (the releaser frees one write per 5 ms).
  for (let n = 1; n < 6; n++) assert.ok(log.includes(`run ${n} pending=1`), `trial ${n} ran while the write of trial ${n - 1} was pending: ${log.join(', ')}`);
  // The next trial's write is issued before the last one ended, never a third.
  assert.equal(storage.maxPending, 2);
  // Each callback saw its trial COMPLETE, in order, before the trial after the next one ran.
  for (let n = 0; n < 6; n++) assert.ok(log.includes(`cb ${n} COMPLETE`), log.join(', '));
  for (let n = 0; n + 2 < 6; n++) assert.ok(log.indexOf(`cb ${n} COMPLETE`) < log.indexOf(`run ${n + 2} pending=1`), log.join(', '));
  assert.equal(study.trials.filter((x) => x.state === 'COMPLETE').length, 6);
});

test('a failed trial is not overlapped: optimize ends on it, as in Optuna, and no trial runs after it', async (t) => {
  const storage = new GatedStorage();
  t.after(() => storage.stop());
  const study = await createStudy({ storage, sampler: new RandomSampler({ seed: 4 }) });
  let runs = 0;
  await assert.rejects(
    study.optimize(
      (tr) => {
        runs++;
        if (tr.number === 1) throw new Error('boom');
        return tr.suggestFloat('x', 0, 1);
      },
      { nTrials: 5 },
    ),
    /boom/,
  );
  assert.equal(runs, 2, 'no trial after the failure');
  assert.equal(storage.pending.length, 0, 'both writes ended before optimize did');
  assert.deepEqual(
    study.trials.map((x) => x.state),
    ['COMPLETE', 'FAIL'],
  );
});
