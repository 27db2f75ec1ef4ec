// Retries through the public API (in memory): a trial whose objective fails is run again as a new trial
// with the same params, linked by retryOf / retryHistory, and resumes from the checkpoint the failed
// attempt saved; the retry limit holds; checkpoint references show on FrozenTrial.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, OptionError, setVerbosity, type Trial } from '../../src/index.js';

setVerbosity('error');

test('a failed trial resumes from its checkpoint in its retry; the study ends COMPLETE with the chain linked', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'pt-retry-'));
  const study = await createStudy({ maxRetries: 2, retryFailed: true, checkpointConfig: { numToKeep: 1 } });
  const firstSteps: number[] = [];
  let crashes = 0;
  await study.optimize(async (trial: Trial) => {
    const x = trial.suggestFloat('x', -1, 1);
    const ck = await trial.getCheckpoint();
    let step = 1;
    let acc = 0;
    if (ck) {
      const saved = JSON.parse(await readFile(ck.path, 'utf8')) as { step: number; acc: number };
      step = saved.step + 1;
      acc = saved.acc;
    }
    firstSteps.push(step);
    for (; step <= 6; step++) {
      acc += step;
      const f = path.join(dir, `${trial.trialId.replace(':', '_')}.json`);
      await writeFile(f, JSON.stringify({ step, acc }));
      await trial.saveCheckpoint(f, { step, metrics: { acc } });
      if (step === 3 && crashes++ === 0) throw new Error('out of memory at step 3');
    }
    return acc + x * 0; // the sum 1..6 = 21 whether or not it was interrupted
  }, { nTrials: 2 });
  const trials = study.trials;
  assert.equal(trials.length, 2);
  const [failed, retry] = trials;
  assert.equal(failed!.state, 'FAIL');
  assert.equal(retry!.state, 'COMPLETE');
  assert.equal(retry!.value, 21, 'the retry carried the accumulated state from the checkpoint');
  assert.deepEqual(firstSteps, [1, 4], 'the retry started at the step after the last checkpoint');
  assert.equal(retry!.systemAttrs['retryOf'], failed!.trialId);
  assert.deepEqual(retry!.systemAttrs['retryHistory'], [failed!.trialId]);
  assert.deepEqual(retry!.params, failed!.params, 'same params');
  assert.equal(failed!.checkpoints.length, 1, 'numToKeep 1 keeps the latest only');
  assert.equal(failed!.checkpoints[0]!.step, 3);
  assert.deepEqual(retry!.checkpoints.map((c) => c.step), [6]);
  const best = await study.bestCheckpoint({ metric: 'acc', order: 'max' });
  assert.equal(best?.step, 6);
  await rm(dir, { recursive: true, force: true });
});

test('the retry limit holds and, without retryFailed, objective failures are not retried', async () => {
  const always = await createStudy({ maxRetries: 2, retryFailed: true });
  await always.optimize(() => {
    throw new Error('broken');
  }, { nTrials: 5, catch: () => true });
  const chains = always.trials.map((t) => (t.systemAttrs['retryHistory'] as unknown[] | undefined)?.length ?? 0);
  // Each original failure is retried at most twice: 0, 1, 2, then a new original 0, 1.
  assert.deepEqual(chains, [0, 1, 2, 0, 1]);
  const none = await createStudy({ maxRetries: 3 });
  await none.optimize(() => {
    throw new Error('broken');
  }, { nTrials: 3, catch: () => true });
  assert.ok(none.trials.every((t) => t.systemAttrs['retryOf'] === undefined), 'objective failures are retried only with retryFailed');
  await assert.rejects(createStudy({ maxRetries: -2 }), (e: unknown) => e instanceof OptionError && e.option === 'maxRetries');
  await assert.rejects(createStudy({ checkpointConfig: { numToKeep: 0 } }), (e: unknown) => e instanceof OptionError && e.option === 'numToKeep');
});
