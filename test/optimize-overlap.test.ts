// Study.optimize starts the next trial while the last ones' finished states are being written (their
// finishTrial resolves once durable); at most OVERLAPPED_WRITES such writes are pending when a trial
// starts, callbacks see the finished trial, a failure is not overlapped, and optimize resolves only
// after every write has ended.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStudy, InMemoryStorage, RandomSampler, setVerbosity } from '../src/index.js';
import { LOOP_TURN_MS, OVERLAPPED_WRITES } from '../src/study.js';

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

test('the next trials run while the last ones are written; OVERLAPPED_WRITES at most; optimize ends after the last write', async (t) => {
  const storage = new GatedStorage();
  t.after(() => storage.stop());
  const study = await createStudy({ storage, sampler: new RandomSampler({ seed: 3 }) });
  const log: string[] = [];
  const n = OVERLAPPED_WRITES * 3;
  await study.optimize(
    (tr) => {
      log.push(`run ${tr.number} pending=${storage.pending.length}`);
      return tr.suggestFloat('x', 0, 1);
    },
    { nTrials: n, callbacks: [(_s, tr) => void log.push(`cb ${tr.number} ${tr.state}`)] },
  );
  // optimize resolved only once every write had ended.
  assert.equal(storage.released, n);
  assert.equal(storage.pending.length, 0);
  // Trial 1 ran while trial 0's write was pending (the releaser frees one write per 5 ms; writes end in order).
  assert.ok(log.includes('run 1 pending=1'), log.join(', '));
  // A trial starts with at most OVERLAPPED_WRITES writes pending, and the releaser is slow enough that
  // the cap is reached: the write of the trial told then is the one more.
  const atStart = log.filter((l) => l.startsWith('run ')).map((l) => Number(l.split('=')[1]));
  assert.ok(Math.max(...atStart) <= OVERLAPPED_WRITES, log.join(', '));
  assert.equal(storage.maxPending, OVERLAPPED_WRITES + 1);
  // Each callback saw its trial COMPLETE, in order, before the next trial ran.
  for (let k = 0; k < n; k++) assert.ok(log.includes(`cb ${k} COMPLETE`), log.join(', '));
  for (let k = 0; k + 1 < n; k++) assert.ok(log.indexOf(`cb ${k} COMPLETE`) < log.findIndex((l) => l.startsWith(`run ${k + 1} `)), log.join(', '));
  assert.equal(study.trials.filter((x) => x.state === 'COMPLETE').length, n);
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

test('a synchronous objective still hands the event loop a turn between trials (timers run)', async () => {
  // InMemoryStorage's writes need no I/O, so nothing else would return to the loop between trials.
  const study = await createStudy({ storage: new InMemoryStorage(), sampler: new RandomSampler({ seed: 5 }) });
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 1);
  const atStart: number[] = [];
  try {
    await study.optimize(
      (tr) => {
        atStart.push(ticks);
        const until = performance.now() + 2 * LOOP_TURN_MS;
        while (performance.now() < until); // a CPU-bound objective that never awaits
        return tr.suggestFloat('x', 0, 1);
      },
      { nTrials: 5 },
    );
  } finally {
    clearInterval(ticker);
  }
  // Every trial took longer than LOOP_TURN_MS, so a timer ran between each two.
  for (let k = 1; k < atStart.length; k++) assert.ok(atStart[k]! > atStart[k - 1]!, `ticks at each trial start: ${atStart.join(', ')}`);
});
