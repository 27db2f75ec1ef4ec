/**
 * GPSampler: the model interpolates noise-free data and its EI vanishes at the incumbent; the sampler
 * is deterministic per seed, beats random search on branin at a small budget, spreads away from trials
 * in flight (kriging believer), handles log / int / step / categorical parameters, handles several
 * objectives (ParEGO scalarisation), and rejects bad options with a message naming the option.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GPSampler, hypervolume, InMemoryStorage, RandomSampler, createStudy, floatDistribution, setVerbosity, type Sampler, type Trial } from '../../src/index.js';
import { logEI } from '../../src/samplers/gp/acquisition.js';
import { GaussianProcess } from '../../src/samplers/gp/gp.js';
import { cholesky, inverseFromCholesky, solveLower, solveUpperT } from '../../src/samplers/gp/linalg.js';
import { OptionError } from '../../src/errors.js';
import { Rng } from '../../src/rng.js';

setVerbosity('silent');

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function branin(t: Trial): number {
  const x1 = t.suggestFloat('x1', -5, 10);
  const x2 = t.suggestFloat('x2', 0, 15);
  const pi = Math.PI;
  return (x2 - (5.1 / (4 * pi * pi)) * x1 * x1 + (5 / pi) * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * pi)) * Math.cos(x1) + 10;
}
const BRANIN_MIN = 0.397887;

function mixed(t: Trial): number {
  const lr = t.suggestFloat('lr', 1e-5, 1e-1, { log: true });
  const layers = t.suggestInt('layers', 1, 5);
  const hidden = t.suggestInt('hidden', 16, 512, { step: 16 });
  const batch = t.suggestInt('batch', 8, 256, { log: true });
  const drop = t.suggestFloat('dropout', 0, 0.5, { step: 0.05 });
  const opt = t.suggestCategorical('optimizer', ['adam', 'sgd', 'rmsprop']);
  return (Math.log10(lr) + 3) ** 2 + (layers - 3) ** 2 + (Math.log2(hidden) - 8) ** 2 + (Math.log2(batch) - 5) ** 2 + (drop - 0.2) ** 2 + (opt === 'adam' ? 0 : 1);
}

test('linear algebra: Cholesky solves and inverse reproduce the identity on a random SPD matrix', () => {
  const rng = new Rng('linalg');
  for (const n of [1, 7, 40]) {
    const B = Float64Array.from({ length: n * n }, () => rng.normal());
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      let s = i === j ? 0.5 : 0;
      for (let k = 0; k < n; k++) s += B[i * n + k]! * B[j * n + k]!;
      A[i * n + j] = s;
    }
    const L = cholesky(A, n);
    const inv = inverseFromCholesky(L, n);
    const b = Float64Array.from({ length: n }, () => rng.normal());
    const x = solveUpperT(L, n, solveLower(L, n, Float64Array.from(b)));
    for (let i = 0; i < n; i++) {
      let ax = 0;
      for (let k = 0; k < n; k++) ax += A[i * n + k]! * x[k]!;
      assert.ok(Math.abs(ax - b[i]!) < 1e-8, `A x != b at ${i} (n=${n})`);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += A[i * n + k]! * inv[k * n + j]!;
        assert.ok(Math.abs(s - (i === j ? 1 : 0)) < 1e-8, `A A^-1 != I at (${i}, ${j}) (n=${n})`);
      }
    }
  }
  assert.throws(() => cholesky(Float64Array.from([1, 2, 2, 1]), 2), /not positive definite/);
});

test('the GP interpolates noise-free observations and log EI is (numerically) zero EI at the incumbent', () => {
  const rng = new Rng('gp-interp');
  const X = Array.from({ length: 20 }, () => Float64Array.from({ length: 3 }, () => rng.random()));
  const y = Float64Array.from(X, (x) => Math.sin(6 * x[0]!) + x[1]! * x[2]! - x[2]!);
  const mean = y.reduce((a, b) => a + b, 0) / y.length;
  const sd = Math.sqrt(y.reduce((a, b) => a + (b - mean) ** 2, 0) / y.length);
  const ys = y.map((v) => (v - mean) / sd);
  const gp = GaussianProcess.fit(X, ys, [false, false, false], { deterministic: true });
  let worst = 0;
  for (let i = 0; i < X.length; i++) worst = Math.max(worst, Math.abs(gp.posterior(X[i]!).mean - ys[i]!));
  assert.ok(worst < 1e-2, `posterior mean misses an observation by ${worst}`);
  const best = ys.indexOf(Math.max(...ys));
  const p = gp.posterior(X[best]!);
  assert.ok(p.variance < 1e-4, `variance at an observation is ${p.variance}`);
  const eiThere = Math.exp(logEI(p.mean, p.variance + 1e-12, ys[best]!).value);
  // Elsewhere the same GP still expects improvement: the near-zero above is not a flat EI.
  let eiMax = 0;
  for (let i = 0; i < 2000; i++) {
    const q = gp.posterior(Float64Array.from({ length: 3 }, () => rng.random()));
    eiMax = Math.max(eiMax, Math.exp(logEI(q.mean, q.variance + 1e-12, ys[best]!).value));
  }
  assert.ok(eiThere < 1e-3, `EI at the best observed point is ${eiThere} (outputs have unit variance)`);
  assert.ok(eiMax > 10 * eiThere, `the largest EI over random points (${eiMax}) should exceed EI at the incumbent (${eiThere}) by 10x`);
});

async function paramsSequence(seed: number): Promise<unknown[]> {
  const study = await createStudy({ sampler: new GPSampler({ seed, nStartupTrials: 5 }) });
  await study.optimize(mixed, { nTrials: 14 });
  return study.trials.map((t) => t.params);
}

test('same seed and history give the same suggestions; another seed differs', async () => {
  const a = await paramsSequence(3);
  const b = await paramsSequence(3);
  const c = await paramsSequence(4);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.slice(5), c.slice(5));
});

test('mixed spaces: every suggestion lies on its distribution (log, int, step, categorical)', async () => {
  const study = await createStudy({ sampler: new GPSampler({ seed: 1, nStartupTrials: 4 }) });
  await study.optimize(mixed, { nTrials: 16 });
  for (const t of study.trials) {
    assert.equal(t.state, 'COMPLETE');
    const p = t.params as Record<string, number | string>;
    assert.ok(Number.isInteger(p['layers']) && Number.isInteger(p['batch']));
    assert.equal((p['hidden'] as number) % 16, 0);
    assert.ok(Math.abs((p['dropout'] as number) / 0.05 - Math.round((p['dropout'] as number) / 0.05)) < 1e-9);
    assert.ok(['adam', 'sgd', 'rmsprop'].includes(p['optimizer'] as string));
  }
  // It learned something: the later half is better on median than the random first quarter.
  const v = study.trials.map((t) => t.values![0]!);
  assert.ok(median(v.slice(8)) < median(v.slice(0, 4)), `GP trials ${v.slice(8)} vs random ${v.slice(0, 4)}`);
});

async function regret(sampler: Sampler, n: number): Promise<number> {
  const study = await createStudy({ sampler });
  await study.optimize(branin, { nTrials: n });
  return study.bestValue - BRANIN_MIN;
}

test('GP beats random search on branin at 25 trials (6 seeds)', async () => {
  const gp: number[] = [];
  const rnd: number[] = [];
  for (let seed = 0; seed < 6; seed++) {
    gp.push(await regret(new GPSampler({ seed }), 25));
    rnd.push(await regret(new RandomSampler({ seed }), 25));
  }
  const wins = gp.filter((g, i) => g < rnd[i]!).length;
  assert.ok(wins >= 5, `GP won on ${wins}/6 seeds: GP ${gp}, random ${rnd}`);
  // Random search's median regret at 25 trials is about 1; a GP doing its job gets 10x closer.
  assert.ok(median(gp) < median(rnd) / 10, `median regret GP ${median(gp)} vs random ${median(rnd)}`);
});

/** 30 finished trials say "best near (2, 2)"; 6 trials in flight sit there. Distance of the next suggestion. */
async function distanceFromCrowd(seed: number, crowd: boolean): Promise<number> {
  const storage = new InMemoryStorage();
  const builder = await createStudy({ storage, studyName: 'crowd', sampler: new RandomSampler({ seed: 50 + seed }) });
  await builder.optimize((t) => (t.suggestFloat('x', -10, 10) - 2) ** 2 + (t.suggestFloat('y', -10, 10) - 2) ** 2, { nTrials: 30 });
  const dx = floatDistribution('x', -10, 10);
  const dy = floatDistribution('y', -10, 10);
  if (crowd) {
    for (let i = 0; i < 6; i++) {
      const t = storage.createTrial(builder.studyId);
      const r = i === 0 ? 0 : 0.05; // one right at the optimum, five around it
      storage.setTrialParams(builder.studyId, t.trialId, { x: 2 + Math.cos(i) * r, y: 2 + Math.sin(i) * r }, { x: dx, y: dy });
    }
  }
  const study = await createStudy({ storage, studyName: 'crowd', loadIfExists: true, sampler: new GPSampler({ seed, deterministicObjective: true }) });
  const trial = study.ask();
  return Math.hypot(trial.suggestFloat('x', -10, 10) - 2, trial.suggestFloat('y', -10, 10) - 2);
}

test('trials in flight anywhere push the next suggestion away from them (kriging believer)', async () => {
  const alone: number[] = [];
  const crowded: number[] = [];
  for (let seed = 0; seed < 5; seed++) {
    alone.push(await distanceFromCrowd(seed, false));
    crowded.push(await distanceFromCrowd(seed, true));
  }
  assert.ok(median(alone) < 0.3, `alone, the GP should go right to the optimum: distances ${alone}`);
  assert.ok(median(crowded) > 2 * median(alone), `with 6 trials in flight at the optimum the suggestion should move out: ${crowded} vs ${alone}`);
});

// Near a converged optimum the posterior variance is far below the GP's noise. A believer observed
// as a noisy value barely lowered it, so the next suggestion took the same maximizer of EI again (1.0e-4,
// 6.3e-4, 2.2e-4 and 1.0e-4 from the trial in flight for seeds 0, 2, 9 and 10 here). The believer is a
// value of the latent function, which removes the uncertainty at and around the point in flight (the
// closest second suggestion is now 4.4e-3 away).
test('a trial in flight at the converged maximizer of EI is not proposed again (believer on the latent value)', async () => {
  const bowl = (t: Trial): number => (t.suggestFloat('x', -10, 10) - 2) ** 2 + 2 * (t.suggestFloat('y', -10, 10) + 1) ** 2;
  const toCube = (t: Trial): number[] => [((t.params['x'] as number) + 10) / 20, ((t.params['y'] as number) + 10) / 20];
  const gaps: number[] = [];
  for (let seed = 0; seed < 12; seed++) {
    const study = await createStudy({ storage: new InMemoryStorage(), sampler: new GPSampler({ seed, nStartupTrials: 5 }) });
    await study.optimize(bowl, { nTrials: 20 });
    const first = study.ask(); // in flight, never told
    bowl(first);
    const second = study.ask();
    bowl(second);
    const [a, b] = [toCube(first), toCube(second)];
    gaps.push(Math.max(Math.abs(a[0]! - b[0]!), Math.abs(a[1]! - b[1]!)));
  }
  assert.ok(Math.min(...gaps) > 2e-3, `the second suggestion came within 2e-3 (unit cube, per coordinate) of the one in flight: ${gaps.map((g) => g.toExponential(1))}`);
});

test('several trials in flight at one and the same point (noise-free fantasies that coincide) still give a suggestion away from them', async () => {
  const bowl = (t: Trial): number => (t.suggestFloat('x', -10, 10) - 2) ** 2 + 2 * (t.suggestFloat('y', -10, 10) + 1) ** 2;
  for (const deterministicObjective of [false, true]) {
    const storage = new InMemoryStorage();
    const study = await createStudy({ storage, sampler: new GPSampler({ seed: 3, nStartupTrials: 5, deterministicObjective }) });
    await study.optimize(bowl, { nTrials: 25 });
    const at = { x: study.bestParams['x'] as number, y: study.bestParams['y'] as number };
    for (let i = 0; i < 4; i++) {
      const t = storage.createTrial(study.studyId);
      storage.setTrialParams(study.studyId, t.trialId, at, { x: floatDistribution('x', -10, 10), y: floatDistribution('y', -10, 10) });
    }
    const next = study.ask();
    bowl(next);
    const gap = Math.max(Math.abs((next.params['x'] as number) - at.x), Math.abs((next.params['y'] as number) - at.y)) / 20;
    assert.ok(gap > 1e-3, `deterministicObjective ${deterministicObjective}: the suggestion is ${gap} (unit cube) from the 4 trials in flight`);
  }
});

test('bad options are refused with a message naming the option', () => {
  assert.throws(() => new GPSampler({ nStartupTrials: -1 }), (e: unknown) => e instanceof OptionError && /nStartupTrials/.test(e.message));
  assert.throws(() => new GPSampler({ seed: Number.NaN }), /seed/);
  assert.throws(() => new GPSampler({ nStartupTrial: 3 } as never), /unknown option "nStartupTrial"/);
});

test('several objectives (ParEGO): deterministic, and beats random search on ZDT1 hypervolume at 40 trials', async () => {
  const zdt1 = (t: Trial): number[] => {
    const x = Array.from({ length: 4 }, (_, i) => t.suggestFloat(`x${i}`, 0, 1));
    const g = 1 + (9 * (x[1]! + x[2]! + x[3]!)) / 3;
    return [x[0]!, g * (1 - Math.sqrt(x[0]! / g))];
  };
  const run = async (sampler: Sampler) => {
    const study = await createStudy({ directions: ['minimize', 'minimize'], sampler });
    await study.optimize(zdt1, { nTrials: 40 });
    return study;
  };
  const a = await run(new GPSampler({ seed: 3 }));
  const b = await run(new GPSampler({ seed: 3 }));
  assert.deepEqual(a.trials.map((t) => t.params), b.trials.map((t) => t.params));
  const hv = (s: Awaited<ReturnType<typeof run>>) => hypervolume(s.trials.map((t) => [...t.values!]), [1.1, 11]);
  const gp = hv(a);
  const random = median(await Promise.all([0, 1, 2].map(async (seed) => hv(await run(new RandomSampler({ seed }))))));
  // The front's hypervolume is 12.1 - 1/3 = 11.77; random search stays far below at 40 trials.
  assert.ok(gp > random + 0.3 && gp > 11.3, `GP hypervolume ${gp} vs random ${random}`);
  // The Pareto set found spreads along the front rather than sitting at one end.
  const f1 = a.bestTrials.map((t) => t.values![0]!);
  assert.ok(Math.max(...f1) - Math.min(...f1) > 0.5, `Pareto front covers f1 in [${Math.min(...f1)}, ${Math.max(...f1)}]`);
});

test('past 100 observations the kernel is reused between refits and suggestions stay deterministic and useful', async () => {
  const run = async () => {
    const storage = new InMemoryStorage();
    const seedStudy = await createStudy({ storage, studyName: 'long', sampler: new RandomSampler({ seed: 9 }) });
    await seedStudy.optimize(branin, { nTrials: 102 });
    const study = await createStudy({ storage, studyName: 'long', loadIfExists: true, sampler: new GPSampler({ seed: 9 }) });
    await study.optimize(branin, { nTrials: 4 }); // 102 (fit), then 103..105 (< 102 * 1.05: reused)
    return study.trials.slice(102).map((t) => t.values![0]!);
  };
  const a = await run();
  assert.deepEqual(a, await run());
  assert.ok(Math.min(...a) - BRANIN_MIN < 0.1, `GP suggestions after 102 random trials reached only ${Math.min(...a)}`);
});
