/**
 * Each pruner's decision against hand-computed cases: histories are built with ask/report/tell on a
 * real study, and the exact prune/no-prune answer of `trial.shouldPrune()` is asserted at given steps.
 * NaN follows Optuna: reported and stored, and each pruner decides on it as Optuna 3.1 does.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  HyperbandPruner,
  InMemoryStorage,
  MedianPruner,
  NopPruner,
  OptionError,
  PatientPruner,
  PeertuneError,
  PercentilePruner,
  SuccessiveHalvingPruner,
  ThresholdPruner,
  TrialPruned,
  createStudy,
  setVerbosity,
  type Pruner,
  type Study,
  type StudyDirection,
  type Trial,
} from '../../src/index.js';

// Trials failed on purpose would log warnings.
setVerbosity('error');

type Reports = ReadonlyArray<readonly [step: number, value: number]>;

/** A trial that reported these values, then ended as given (a number = COMPLETE with that value). */
async function trialWith(study: Study, reports: Reports, end: number | 'PRUNED' | 'FAIL' | 'RUNNING' = 'RUNNING'): Promise<Trial> {
  const trial = study.ask();
  for (const [step, value] of reports) trial.report(value, step);
  if (typeof end === 'number') await study.tell(trial, end);
  else if (end !== 'RUNNING') await study.tell(trial, null, { state: end });
  return trial;
}

/** Reports one value and asks the pruner. */
function reportAndAsk(trial: Trial, value: number, step: number): boolean {
  trial.report(value, step);
  return trial.shouldPrune();
}

function study(pruner: Pruner, direction: StudyDirection = 'minimize'): Promise<Study> {
  return createStudy({ pruner, direction });
}

test('the default pruner is MedianPruner with Optuna defaults', async () => {
  const s = await createStudy();
  assert.ok(s.pruner instanceof MedianPruner);
  const p = s.pruner as MedianPruner;
  assert.deepEqual([p.percentile, p.nStartupTrials, p.nWarmupSteps, p.intervalSteps, p.nMinTrials], [50, 5, 0, 1, 1]);
  assert.equal(new NopPruner().prune(), false);
});

test('median: prunes a trial whose best value is worse than the median of COMPLETE trials at that step', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 2 }));
  await trialWith(s, [[0, 1], [1, 2], [2, 3]], 3);
  // Before the second COMPLETE trial the study is in its startup phase: even a terrible value stays.
  const early = await trialWith(s, []);
  assert.equal(reportAndAsk(early, 100, 0), false);
  await trialWith(s, [[0, 3], [1, 4], [2, 5]], 5);
  // Medians now: step 0 -> 2, step 1 -> 3, step 2 -> 4.
  assert.equal(early.shouldPrune(), true);
  const worse = await trialWith(s, []);
  assert.equal(reportAndAsk(worse, 2.5, 0), true);
  const equal = await trialWith(s, []);
  assert.equal(reportAndAsk(equal, 2, 0), false, 'a value equal to the median is not worse');
  const good = await trialWith(s, []);
  assert.equal(reportAndAsk(good, 1.5, 0), false);
  // The trial's best value so far counts, not its latest one: 1.5 < median 3 at step 1.
  assert.equal(reportAndAsk(good, 3.5, 1), false);
  const bad = await trialWith(s, [[0, 3.2]]);
  assert.equal(reportAndAsk(bad, 3.5, 1), true);
});

test('median: only COMPLETE trials count; PRUNED, FAIL and RUNNING trials do not move the median', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 1 }));
  await trialWith(s, [[0, 10]], 10);
  await trialWith(s, [[0, 20]], 20);
  // Very good values in trials that are not COMPLETE: with them the median would be far below 12.
  await trialWith(s, [[0, 0]], 'PRUNED');
  await trialWith(s, [[0, 0]], 'FAIL');
  await trialWith(s, [[0, 0]], 'RUNNING');
  await trialWith(s, [[0, 0]], 'PRUNED');
  const t = await trialWith(s, []);
  assert.equal(reportAndAsk(t, 14, 0), false, 'median of COMPLETE trials is 15');
  const u = await trialWith(s, []);
  assert.equal(reportAndAsk(u, 16, 0), true);
});

test('median: warmup steps, interval steps (also with sparse reports) and nMinTrials', async () => {
  const warm = await study(new MedianPruner({ nStartupTrials: 1, nWarmupSteps: 2 }));
  await trialWith(warm, [[0, 1], [1, 1], [2, 1], [3, 1]], 1);
  const w = await trialWith(warm, []);
  assert.equal(reportAndAsk(w, 9, 0), false);
  assert.equal(reportAndAsk(w, 9, 1), false);
  assert.equal(reportAndAsk(w, 9, 2), true, 'first step after the warmup is checked');

  const every2 = await study(new MedianPruner({ nStartupTrials: 1, intervalSteps: 2 }));
  await trialWith(every2, [[0, 1], [1, 1], [2, 1], [3, 1], [4, 1]], 1);
  const i = await trialWith(every2, []);
  assert.deepEqual([0, 1, 2, 3].map((step) => reportAndAsk(i, 9, step)), [true, false, true, false]);
  // Sparse reports: step 3 is the first report at or after pruning step 2, so it is checked.
  const sparse = await trialWith(every2, []);
  assert.equal(reportAndAsk(sparse, 9, 0), true);
  assert.equal(reportAndAsk(sparse, 9, 3), true);

  const warmEvery3 = await study(new MedianPruner({ nStartupTrials: 1, nWarmupSteps: 1, intervalSteps: 3 }));
  await trialWith(warmEvery3, [0, 1, 2, 3, 4, 5].map((s) => [s, 1] as const), 1);
  const wi = await trialWith(warmEvery3, []);
  // Pruning points are 1, 4, 7, ...
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((step) => reportAndAsk(wi, 9, step)), [false, true, false, false, true, false]);

  const min3 = await study(new MedianPruner({ nStartupTrials: 1, nMinTrials: 3 }));
  await trialWith(min3, [[0, 1]], 1);
  await trialWith(min3, [[0, 1]], 1);
  await trialWith(min3, [], 1); // COMPLETE but never reported step 0: does not count towards nMinTrials
  const m = await trialWith(min3, []);
  assert.equal(reportAndAsk(m, 9, 0), false);
  await trialWith(min3, [[0, 1]], 1);
  assert.equal(m.shouldPrune(), true);
  // Steps no COMPLETE trial reported give no verdict.
  assert.equal(reportAndAsk(m, 9, 7), false);
});

test('median: maximize flips the comparison and uses the best (largest) value so far', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 2 }), 'maximize');
  await trialWith(s, [[0, 1], [1, 1]], 1);
  await trialWith(s, [[0, 3], [1, 5]], 5);
  const low = await trialWith(s, []);
  assert.equal(reportAndAsk(low, 1.5, 0), true, '1.5 < median 2');
  const high = await trialWith(s, []);
  assert.equal(reportAndAsk(high, 2.5, 0), false);
  // Best so far is 2.5 (max), below the step-1 median of 3.
  assert.equal(reportAndAsk(high, 0, 1), true);
  const climbing = await trialWith(s, [[0, 0]]);
  assert.equal(reportAndAsk(climbing, 3.1, 1), false);
});

test('percentile: interpolates like numpy and mirrors the percentile when maximizing', async () => {
  const build = async (p: number, direction: StudyDirection) => {
    const s = await study(new PercentilePruner(p, { nStartupTrials: 5 }), direction);
    for (const v of [5, 1, 4, 2, 3]) await trialWith(s, [[0, v]], v);
    return async (value: number) => reportAndAsk(await trialWith(s, []), value, 0);
  };
  const q25 = await build(25, 'minimize'); // 25th percentile of 1..5 = 2
  assert.equal(await q25(2.01), true);
  assert.equal(await q25(2), false);
  const q10 = await build(10, 'minimize'); // position 0.4 -> 1.4
  assert.equal(await q10(1.41), true);
  assert.equal(await q10(1.39), false);
  const q25max = await build(25, 'maximize'); // top quarter: 75th percentile = 4
  assert.equal(await q25max(3.99), true);
  assert.equal(await q25max(4), false);
  const q0 = await build(0, 'minimize'); // must beat the best
  assert.equal(await q0(1.001), true);
  assert.equal(await q0(1), false);
  const q100 = await build(100, 'minimize'); // never worse than the worst -> only above 5
  assert.equal(await q100(5), false);
  assert.equal(await q100(5.5), true);
});

test('percentile: NaN and Infinity intermediate values', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 1 }));
  await trialWith(s, [[0, 1], [1, 1]], 1);
  // report() refuses NaN, but a replica can hold one from another client; write it the storage way.
  const nanPeer = s.ask();
  s.storage.setTrialIntermediateValue(s.studyId, nanPeer.trialId, 0, NaN);
  await s.tell(nanPeer, 3);
  // NaN values of other trials are ignored: median at step 0 is still 1.
  const t = await trialWith(s, []);
  assert.equal(reportAndAsk(t, 1, 0), false);
  // A trial whose values are all NaN is pruned.
  const allNan = s.ask();
  s.storage.setTrialIntermediateValue(s.studyId, allNan.trialId, 0, NaN);
  assert.equal(allNan.shouldPrune(), true);
  // NaN next to a real value: the real value is the best so far.
  const mixed = s.ask();
  mixed.report(0.5, 0);
  s.storage.setTrialIntermediateValue(s.studyId, mixed.trialId, 1, NaN);
  assert.equal(mixed.shouldPrune(), false);
  const inf = await trialWith(s, []);
  assert.equal(reportAndAsk(inf, Infinity, 0), true);
});

test('percentile/median: option errors name the option and the valid range', () => {
  assert.throws(() => new MedianPruner({ nStartupTrials: -1 }), /MedianPruner: nStartupTrials must be an integer >= 0, got -1/);
  assert.throws(() => new MedianPruner({ nWarmupSteps: 1.5 }), /MedianPruner: nWarmupSteps must be an integer >= 0, got 1.5/);
  assert.throws(() => new MedianPruner({ intervalSteps: 0 }), /MedianPruner: intervalSteps must be an integer >= 1, got 0/);
  assert.throws(() => new MedianPruner({ nMinTrials: 0 }), /MedianPruner: nMinTrials must be an integer >= 1, got 0/);
  assert.throws(() => new PercentilePruner(101), /PercentilePruner: percentile must be a number in \[0, 100\], got 101/);
  assert.throws(() => new PercentilePruner(NaN), /percentile must be a number in \[0, 100\], got NaN/);
  assert.throws(() => new PercentilePruner(-1), (e: unknown) => e instanceof OptionError && e instanceof PeertuneError && e.option === 'percentile' && e.value === -1);
  assert.throws(
    () => new MedianPruner({ nStartupTrial: 3 } as never),
    /MedianPruner: unknown option "nStartupTrial"; valid options are nStartupTrials, nWarmupSteps, intervalSteps, nMinTrials/,
  );
  assert.throws(() => new SuccessiveHalvingPruner({ eta: 3 } as never), /SuccessiveHalvingPruner: unknown option "eta"/);
  assert.throws(() => new HyperbandPruner({ max_resource: 3 } as never), /HyperbandPruner: unknown option "max_resource"/);
  assert.throws(() => new ThresholdPruner({ upper: 1, warmup: 2 } as never), /ThresholdPruner: unknown option "warmup"/);
  assert.throws(() => new PatientPruner(null, { patience: 1, delta: 1 } as never), /PatientPruner: unknown option "delta"/);
});

test('median prunes through optimize(): TrialPruned ends the trial as PRUNED with its last value', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 2 }));
  let n = 0;
  await s.optimize(
    (trial) => {
      const offset = n++ < 2 ? 0 : 10; // the first two trials are good, the rest are worse everywhere
      for (let step = 0; step < 5; step++) {
        trial.report(offset + step, step);
        if (trial.shouldPrune()) throw new TrialPruned();
      }
      return offset + 4;
    },
    { nTrials: 4 },
  );
  assert.deepEqual(s.trials.map((t) => t.state), ['COMPLETE', 'COMPLETE', 'PRUNED', 'PRUNED']);
  assert.deepEqual(s.trials[2]!.values, [10]);
  assert.equal(s.trials[2]!.intermediateValues.size, 1, 'pruned at step 0');
});

test('threshold: prunes outside [lower, upper] or on NaN, after warmup and on interval steps', async () => {
  const s = await study(new ThresholdPruner({ lower: 0, upper: 1, nWarmupSteps: 1 }));
  const t = await trialWith(s, []);
  assert.equal(reportAndAsk(t, 5, 0), false, 'warmup');
  assert.equal(reportAndAsk(t, 5, 1), true);
  const inside = await trialWith(s, [[0, 0]]);
  assert.equal(reportAndAsk(inside, 1, 1), false, 'bounds are inclusive');
  const low = await trialWith(s, [[0, 0.5]]);
  assert.equal(reportAndAsk(low, -0.01, 1), true);
  const nan = s.ask();
  nan.report(0.5, 0);
  s.storage.setTrialIntermediateValue(s.studyId, nan.trialId, 1, NaN);
  assert.equal(nan.shouldPrune(), true);

  const every3 = await study(new ThresholdPruner({ upper: 1, intervalSteps: 3 }));
  const i = await trialWith(every3, []);
  assert.deepEqual([0, 1, 2, 3, 4].map((step) => reportAndAsk(i, 2, step)), [true, false, false, true, false]);
  // Only the latest value matters, not the best so far.
  const onlyLower = await study(new ThresholdPruner({ lower: 10 }), 'maximize');
  const l = await trialWith(onlyLower, [[0, 20]]);
  assert.equal(reportAndAsk(l, 9, 1), true);
});

test('threshold: errors for missing or crossed bounds and bad options', () => {
  assert.throws(() => new ThresholdPruner({}), /ThresholdPruner: give at least one of lower or upper/);
  assert.throws(() => new ThresholdPruner({ lower: 2, upper: 1 }), /ThresholdPruner: lower \(2\) must be <= upper \(1\)/);
  assert.throws(() => new ThresholdPruner({ lower: NaN }), /ThresholdPruner: lower must be a number/);
  assert.throws(() => new ThresholdPruner({ upper: 1, nWarmupSteps: -1 }), /nWarmupSteps must be an integer >= 0, got -1/);
  assert.throws(() => new ThresholdPruner({ upper: 1, intervalSteps: 0 }), /intervalSteps must be an integer >= 1, got 0/);
  assert.doesNotThrow(() => new ThresholdPruner({ lower: 1, upper: 1 }));
});

test('patient: prunes after `patience` reports without improvement by more than minDelta', async () => {
  const s = await study(new PatientPruner(null, { patience: 2 }));
  const t = await trialWith(s, [[0, 5], [1, 4]]);
  assert.equal(reportAndAsk(t, 3, 2), false, 'too few reports to judge');
  assert.equal(reportAndAsk(t, 3.5, 3), false, 'best before the window 5, best in it 3');
  assert.equal(reportAndAsk(t, 4, 4), false, 'before 4, in window 3');
  assert.equal(reportAndAsk(t, 4, 5), true, 'before 3, in window 3.5: no improvement for 2 reports');

  const delta = await study(new PatientPruner(null, { patience: 2, minDelta: 0.6 }));
  const d = await trialWith(delta, [[0, 5], [1, 4], [2, 3], [3, 3.5], [4, 4]]);
  assert.equal(reportAndAsk(d, 4, 5), false, '3 + 0.6 is not below 3.5');
  assert.equal(reportAndAsk(d, 4, 6), true, 'before 3, in window 4: 3.6 < 4');

  const tie = await study(new PatientPruner(null, { patience: 1 }));
  const ti = await trialWith(tie, [[0, 5], [1, 3], [2, 4]]);
  assert.equal(reportAndAsk(ti, 3, 3), false, 'matching the earlier best (3 vs 3) is not stagnation');

  const max = await study(new PatientPruner(null, { patience: 1 }), 'maximize');
  const m = await trialWith(max, [[0, 1], [1, 2]]);
  assert.equal(reportAndAsk(m, 3, 2), false);
  assert.equal(reportAndAsk(m, 2.5, 3), false, 'window [3, 2.5] still holds the best 3');
  assert.equal(reportAndAsk(m, 2.9, 4), true, 'best before 3, window best 2.9');
});

test('patient: a wrapped pruner gets the last word once the trial is stagnant', async () => {
  const s = await study(new PatientPruner(new ThresholdPruner({ upper: 10 }), { patience: 1 }));
  const t = await trialWith(s, [[0, 1], [1, 2]]);
  assert.equal(reportAndAsk(t, 3, 2), false, 'stagnant, but the threshold pruner says go on');
  assert.equal(reportAndAsk(t, 11, 3), true);
  const fine = await trialWith(s, [[0, 20], [1, 18]]);
  assert.equal(reportAndAsk(fine, 15, 2), false, 'improving: the wrapped pruner is not asked');
  assert.throws(() => new PatientPruner(null, { patience: -1 }), /PatientPruner: patience must be an integer >= 0, got -1/);
  assert.throws(() => new PatientPruner(null, { patience: 1, minDelta: -0.1 }), /PatientPruner: minDelta must be a finite number >= 0, got -0.1/);
  assert.throws(() => new PatientPruner({} as Pruner, { patience: 1 }), /wrappedPruner must be a pruner/);
});

test('successive halving: rung promotion keeps the top 1/reductionFactor of trials that reached the rung', async () => {
  // Rungs end at steps 1, 2, 4, 8.
  const s = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 }));
  await trialWith(s, [[1, 0.5], [2, 0.4], [4, 0.3]], 0.3);
  await trialWith(s, [[1, 0.9]], 'PRUNED');
  const t = await trialWith(s, [[0, 0.1]]);
  // Step 0 ends no rung.
  assert.equal(t.shouldPrune(), false);
  // Rung 0: 0.5, 0.9 and 0.7 -> only the best (floor(3/2) = 1) goes on.
  assert.equal(reportAndAsk(t, 0.7, 1), true);
  const u = await trialWith(s, []);
  // Rung 0: 0.5, 0.9, 0.7 (T, still running) and 0.45 -> the top 2 go on.
  assert.equal(reportAndAsk(u, 0.45, 1), false);
  // Rung 1 (step 2): only the first trial reached it, with 0.4 -> u is not the best of 2.
  assert.equal(reportAndAsk(u, 0.45, 2), true);
  const v = await trialWith(s, [[1, 0.3]]);
  assert.equal(v.shouldPrune(), false);
  assert.equal(reportAndAsk(v, 0.35, 2), false, 'rung 1 holds 0.4, 0.45 and 0.35: the best goes on');
  assert.equal(v.snapshot().systemAttrs['ashaJudgedRungs'], 2);
});

test('successive halving: a promoted trial is not demoted later, and skipped checks catch up', async () => {
  const s = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 }));
  await trialWith(s, [[1, 0.5]], 0.5);
  const x = await trialWith(s, []);
  assert.equal(reportAndAsk(x, 0.45, 1), false);
  // Better trials arrive at rung 0 after x passed it.
  for (let i = 0; i < 3; i++) await trialWith(s, [[1, 0.1]], 0.1);
  // Judged again at rung 0, x would now be pruned (0.45 is not in the top 2 of 5); ASHA does not re-judge.
  assert.equal(reportAndAsk(x, 0.45, 2), false);
  // A trial that never asked at step 1 is judged at every rung it passed when it finally asks.
  const late = await trialWith(s, [[1, 0.45], [2, 0.01]]);
  assert.equal(late.shouldPrune(), true, 'rung 0 with 0.45 among 0.5, 0.1 x3, 0.45 (x) fails');
});

test('successive halving: a trial pruned at a rung does not count at rungs its last report passed', async () => {
  // Rungs end at steps 1, 2, 4.
  const s = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 }));
  await trialWith(s, [[1, 0.1]], 0.1);
  const sparse = await trialWith(s, []);
  // One report at step 3 reaches the ends of rungs 0 and 1; it fails rung 0 (0.9 vs 0.1).
  assert.equal(reportAndAsk(sparse, 0.9, 3), true);
  await s.tell(sparse, null, { state: 'PRUNED' });
  assert.equal(sparse.snapshot().systemAttrs['ashaJudgedRungs'], 1);
  const b = await trialWith(s, []);
  assert.equal(reportAndAsk(b, 0.05, 1), false);
  // Alone at rung 1: the pruned trial's 0.9 at step 3 is not a rung-1 value (Optuna: no completed_rung_1).
  assert.equal(reportAndAsk(b, 0.95, 2), false);
});

test('successive halving: maximize, minEarlyStoppingRate, bootstrapCount and NaN', async () => {
  const max = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 }), 'maximize');
  await trialWith(max, [[1, 0.5]], 0.5);
  const lo = await trialWith(max, []);
  assert.equal(reportAndAsk(lo, 0.4, 1), true);
  const hi = await trialWith(max, []);
  assert.equal(reportAndAsk(hi, 0.6, 1), false);

  // minEarlyStoppingRate 1 with minResource 2, eta 3: the first rung ends at step 6.
  const late = await study(new SuccessiveHalvingPruner({ minResource: 2, reductionFactor: 3, minEarlyStoppingRate: 1 }));
  await trialWith(late, [[6, 0]], 0);
  const t = await trialWith(late, []);
  assert.equal(reportAndAsk(t, 9, 2), false);
  assert.equal(reportAndAsk(t, 9, 5), false);
  assert.equal(reportAndAsk(t, 9, 6), true);

  // bootstrapCount 2: the first two trials to reach a rung are pruned, the third can go on.
  const boot = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2, bootstrapCount: 2 }));
  const answers: boolean[] = [];
  for (let i = 0; i < 3; i++) answers.push(reportAndAsk(await trialWith(boot, []), 1 - i * 0.1, 1));
  assert.deepEqual(answers, [true, true, false]);

  const nanStudy = await study(new SuccessiveHalvingPruner({ minResource: 1 }));
  const n = nanStudy.ask();
  nanStudy.storage.setTrialIntermediateValue(nanStudy.studyId, n.trialId, 1, NaN);
  assert.equal(n.shouldPrune(), true);
});

test("successive halving: minResource 'auto' waits for a COMPLETE trial, then uses its steps / 100", async () => {
  const pruner = new SuccessiveHalvingPruner({ reductionFactor: 4 });
  const s = await study(pruner);
  const before = await trialWith(s, []);
  assert.equal(reportAndAsk(before, 1e9, 5), false, 'no COMPLETE trial yet: no pruning');
  const long: [number, number][] = [];
  for (let step = 0; step <= 250; step++) long.push([step, 1]);
  await trialWith(s, long, 1);
  assert.equal(pruner.resolvedMinResource(s), 2);
  const t = await trialWith(s, []);
  assert.equal(reportAndAsk(t, 5, 1), false, 'rung 0 ends at step 2');
  // The COMPLETE trial ran before the estimate existed; it still counts at rung 0 (Optuna would not
  // count it, having never judged it, and would let this trial go on).
  assert.equal(reportAndAsk(t, 5, 2), true);
  // The estimate is made once: a longer trial later does not move the rungs.
  const longer: [number, number][] = [];
  for (let step = 0; step <= 1000; step += 10) longer.push([step, 1]);
  await trialWith(s, longer, 1);
  assert.equal(pruner.resolvedMinResource(s), 2);
});

test('successive halving: option errors', () => {
  assert.throws(() => new SuccessiveHalvingPruner({ reductionFactor: 1 }), /SuccessiveHalvingPruner: reductionFactor must be an integer >= 2, got 1/);
  assert.throws(() => new SuccessiveHalvingPruner({ minResource: 0 }), /minResource must be 'auto' or an integer >= 1, got 0/);
  assert.throws(() => new SuccessiveHalvingPruner({ minResource: 'sometimes' as 'auto' }), /minResource must be 'auto' or an integer >= 1, got "sometimes"/);
  assert.throws(() => new SuccessiveHalvingPruner({ minEarlyStoppingRate: -1 }), /minEarlyStoppingRate must be an integer >= 0, got -1/);
  assert.throws(() => new SuccessiveHalvingPruner({ bootstrapCount: 1 }), /bootstrapCount > 0 needs an integer minResource/);
});

test('hyperband: every replica puts every trial in the same bracket, weighted by bracket budgets', async () => {
  // minResource 1, maxResource 9, eta 3 -> 3 brackets with trial shares 9, 5, 3.
  const opts = { minResource: 1, maxResource: 9, reductionFactor: 3 };
  const a = new HyperbandPruner(opts);
  const b = new HyperbandPruner(opts);
  const sa = await createStudy({ studyName: 'hb', pruner: a, storage: new InMemoryStorage() });
  const sb = await createStudy({ studyName: 'hb', pruner: b, storage: new InMemoryStorage() });
  assert.equal(a.nBrackets(sa), 3);
  const counts = [0, 0, 0];
  for (let i = 0; i < 170; i++) {
    const ta = sa.ask();
    const tb = sb.ask();
    assert.equal(ta.trialId, tb.trialId);
    const bracket = a.bracketOf(sa, ta)!;
    assert.equal(b.bracketOf(sb, tb), bracket);
    counts[bracket]!++;
  }
  // Expected 90, 50, 30; a hash is not exact but must follow the weights.
  assert.ok(counts[0]! > counts[1]! && counts[1]! > counts[2]! && counts[2]! > 10, `bracket sizes ${counts.join(', ')}`);
});

test('hyperband: a trial is compared only with trials of its own bracket, on its bracket rungs', async () => {
  const pruner = new HyperbandPruner({ minResource: 1, maxResource: 9, reductionFactor: 3 });
  const s = await study(pruner);
  /** A fresh RUNNING trial in the given bracket (asking until the hash lands there). */
  const inBracket = async (want: number): Promise<Trial> => {
    for (;;) {
      const t = s.ask();
      if (pruner.bracketOf(s, t) === want) return t;
      await s.tell(t, null, { state: 'FAIL' });
    }
  };
  // Excellent trials in brackets 0 and 1, reporting at every step 0..9.
  for (const bracket of [0, 1]) {
    for (let i = 0; i < 3; i++) {
      const t = await inBracket(bracket);
      for (let step = 0; step <= 9; step++) t.report(0, step);
      await s.tell(t, 0);
    }
  }
  // Bracket 2's first rung ends at step 9 and nobody else in bracket 2 reached it: the trial goes on.
  const lone = await inBracket(2);
  for (let step = 0; step <= 8; step++) assert.equal(reportAndAsk(lone, 1, step), false);
  assert.equal(reportAndAsk(lone, 1, 9), false);
  await s.tell(lone, 1);
  // A better trial in bracket 2 reaches step 9; now a bracket-2 trial with 1 is not the best of 3.
  const good = await inBracket(2);
  good.report(0.5, 9);
  await s.tell(good, 0.5);
  const next = await inBracket(2);
  assert.equal(reportAndAsk(next, 1, 8), false, 'bracket 2 rung 0 ends at step 9');
  assert.equal(reportAndAsk(next, 1, 9), true);
  // Bracket 0 judges at step 1 already, against the bracket-0 trials' 0.
  const fast = await inBracket(0);
  assert.equal(reportAndAsk(fast, 0.5, 0), false);
  assert.equal(reportAndAsk(fast, 0.5, 1), true);
});

test("hyperband: maxResource 'auto' waits for a COMPLETE trial; option errors", async () => {
  const pruner = new HyperbandPruner({ reductionFactor: 3 });
  const s = await study(pruner);
  const t = await trialWith(s, []);
  assert.equal(reportAndAsk(t, 1e9, 3), false);
  assert.equal(pruner.nBrackets(s), null);
  await trialWith(s, [[0, 1], [26, 1]], 1); // longest COMPLETE trial: 27 steps -> brackets for 1, 3, 9, 27
  assert.equal(pruner.nBrackets(s), 4);
  assert.throws(() => new HyperbandPruner({ minResource: 0 }), /HyperbandPruner: minResource must be an integer >= 1, got 0/);
  assert.throws(() => new HyperbandPruner({ minResource: 5, maxResource: 4 }), /maxResource must be 'auto' or an integer >= minResource \(5\), got 4/);
  assert.throws(() => new HyperbandPruner({ reductionFactor: 1 }), /reductionFactor must be an integer >= 2, got 1/);
  assert.throws(() => new HyperbandPruner({ bootstrapCount: 2 }), /bootstrapCount > 0 needs an integer maxResource/);
});

// Parity with Optuna 3.1 on generated histories: test/pruners/parity.test.ts.

test('NaN: report(NaN) is stored; percentile, threshold and patient decide on it as Optuna does', async () => {
  const s = await study(new MedianPruner({ nStartupTrials: 1 }));
  await trialWith(s, [[0, 0.5], [1, 0.4]], 0.4);
  const t = s.ask();
  t.report(NaN, 0);
  assert.ok(Number.isNaN(t.snapshot().intermediateValues.get(0)));
  assert.equal(t.shouldPrune(), true, 'a trial with only NaN so far is pruned (nanmin is NaN)');
  const u = s.ask();
  u.report(0.3, 0);
  assert.equal(reportAndAsk(u, NaN, 1), false, 'NaN is skipped: the best so far (0.3) beats the median at step 1');
  // A COMPLETE trial's NaN at a step is left out of the percentile; all NaN there: no threshold, no prune.
  const v = await study(new MedianPruner({ nStartupTrials: 1 }));
  await trialWith(v, [[0, NaN]], 1);
  assert.equal(reportAndAsk(v.ask(), 5, 0), false);
  await s.tell(u, null, { state: 'PRUNED' });
  assert.equal(s.storage.getTrial(s.studyId, u.trialId).values, null, 'a PRUNED trial whose last report is NaN has no value (Optuna)');

  const th = await study(new ThresholdPruner({ upper: 1 }));
  assert.equal(reportAndAsk(th.ask(), NaN, 0), true);
  const pa = await study(new PatientPruner(null, { patience: 1 }));
  const pt = pa.ask();
  pt.report(NaN, 0);
  pt.report(NaN, 1);
  assert.equal(reportAndAsk(pt, NaN, 2), false, 'all NaN on both sides of the window: no evidence, no prune');
});

test("percentile: a value exactly on numpy's interpolated percentile is not pruned (b - (b - a) * (1 - g) for g >= 0.5)", async () => {
  const s = await study(new PercentilePruner(75, { nStartupTrials: 2 }));
  await trialWith(s, [[0, 0.2]], 0.2);
  await trialWith(s, [[0, 0.9]], 0.9);
  // numpy: 0.9 - 0.7 * 0.25 = 0.7250000000000001; a + (b - a) * g would give 0.7249999999999999 and prune.
  assert.equal(reportAndAsk(s.ask(), 0.7250000000000001, 0), false);
  assert.equal(reportAndAsk(s.ask(), 0.7250000000000002, 0), true);
});

test('successive halving: NaN at a rung prunes, and the NaN is not counted at that rung', async () => {
  const s = await study(new SuccessiveHalvingPruner({ minResource: 1, reductionFactor: 2 }));
  const a = s.ask();
  a.report(0.5, 0);
  assert.equal(reportAndAsk(a, NaN, 1), true);
  await s.tell(a, null, { state: 'PRUNED' });
  // Rung 0 then holds b (0.4) and x (0.6). Were a's NaN counted there as the worst value, c would be
  // compared among 4 (0.4, 0.45, 0.6, NaN) and go on as 2nd; among the real 3 it must be the best.
  const b = s.ask();
  b.report(0.5, 0);
  assert.equal(reportAndAsk(b, 0.4, 1), false);
  const x = s.ask();
  x.report(0.5, 0);
  assert.equal(reportAndAsk(x, 0.6, 1), true);
  const c = s.ask();
  c.report(0.5, 0);
  assert.equal(reportAndAsk(c, 0.45, 1), true);
});
