/**
 * QMCSampler and its Sobol sequence: the unscrambled sequence matches the published first points
 * (SciPy's `Sobol(d, scramble=False)`, Joe & Kuo's directions), the scrambled one is still a digital
 * (0, m, 2)-net in its first two coordinates (every elementary box of volume 2^-m holds exactly one
 * of the first 2^m points), it spreads more evenly than random points, the sampler is deterministic
 * under a seed, trials take consecutive indices, and values respect their distributions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStudy, QMCSampler, QMC_INDEX_KEY, RandomSampler, setVerbosity, SobolSequence, type Sampler, type Trial } from '../../src/index.js';
import { Rng } from '../../src/rng.js';

setVerbosity('silent');

test('unscrambled Sobol points match the published sequence (first 8 points in 5-D, and deep points)', () => {
  const s = new SobolSequence(5, { scramble: false, seed: 0 });
  // scipy.stats.qmc.Sobol(d=5, scramble=False).random(8)
  const expected = [
    [0, 0, 0, 0, 0],
    [0.5, 0.5, 0.5, 0.5, 0.5],
    [0.75, 0.25, 0.25, 0.25, 0.75],
    [0.25, 0.75, 0.75, 0.75, 0.25],
    [0.375, 0.375, 0.625, 0.875, 0.375],
    [0.875, 0.875, 0.125, 0.375, 0.875],
    [0.625, 0.125, 0.875, 0.625, 0.625],
    [0.125, 0.625, 0.375, 0.125, 0.125],
  ];
  expected.forEach((row, i) => assert.deepEqual(Array.from(s.point(i)), row, `point ${i}`));
  // Point 4321 of the 256-dimensional sequence, coordinates 1, 2, 101 and 256 (SciPy, bits=32).
  const deep = new SobolSequence(256, { scramble: false, seed: 0 }).point(4321);
  for (const [k, v] of [[0, 0.53552246], [1, 0.5604248], [100, 0.34118652], [255, 0.19543457]] as const) assert.ok(Math.abs(deep[k]! - v) < 5e-9, `coordinate ${k}: ${deep[k]} vs ${v}`);
});

test('scrambled Sobol keeps the net property: each elementary box of volume 1/64 holds one of the first 64 points', () => {
  for (const seed of [1, 2, 3]) {
    const s = new SobolSequence(2, { scramble: true, seed });
    const pts = Array.from({ length: 64 }, (_, i) => s.point(i));
    for (let a = 0; a <= 6; a++) {
      const b = 6 - a;
      const seen = new Set<number>();
      for (const p of pts) seen.add(Math.floor(p[0]! * 2 ** a) * 2 ** b + Math.floor(p[1]! * 2 ** b));
      assert.equal(seen.size, 64, `seed ${seed}: boxes 2^-${a} x 2^-${b} hold ${64 - seen.size} repeats`);
    }
    // Scrambling moves the points: point 0 is not the origin.
    assert.ok(pts[0]![0] !== 0 || pts[0]![1] !== 0);
  }
  assert.notDeepEqual(Array.from(new SobolSequence(3, { scramble: true, seed: 1 }).point(5)), Array.from(new SobolSequence(3, { scramble: true, seed: 2 }).point(5)));
});

/** L2-star discrepancy of points in the unit cube (Warnock's formula): lower is more even. */
function l2Star(pts: Float64Array[]): number {
  const n = pts.length;
  const d = pts[0]!.length;
  let single = 0;
  for (const p of pts) single += p.reduce((acc, v) => acc * (1 - v * v), 1);
  let pairs = 0;
  for (const p of pts) for (const q of pts) pairs += p.reduce((acc, v, k) => acc * (1 - Math.max(v, q[k]!)), 1);
  return Math.sqrt(3 ** -d - (2 ** (1 - d) / n) * single + pairs / (n * n));
}

test('the first 128 scrambled points in 4-D: one per 1/128 interval in every coordinate, and far lower discrepancy than random points', () => {
  const s = new SobolSequence(4, { scramble: true, seed: 7 });
  const sobol = Array.from({ length: 128 }, (_, i) => s.point(i));
  for (let k = 0; k < 4; k++) assert.equal(new Set(sobol.map((p) => Math.floor(p[k]! * 128))).size, 128, `coordinate ${k}`);
  const randomD = [1, 2, 3, 4, 5].map((seed) => {
    const rng = new Rng(seed);
    return l2Star(Array.from({ length: 128 }, () => Float64Array.from({ length: 4 }, () => rng.random())));
  });
  const ds = l2Star(sobol);
  assert.ok(ds < 0.6 * [...randomD].sort((x, y) => x - y)[2]!, `Sobol L2-star discrepancy ${ds} vs random ${randomD}`);
});

function objective(t: Trial): number {
  const x = t.suggestFloat('x', -2, 2);
  const lr = t.suggestFloat('lr', 1e-5, 1e-1, { log: true });
  const n = t.suggestInt('n', 1, 8);
  const s = t.suggestFloat('s', 0, 1, { step: 0.25 });
  const c = t.suggestCategorical('c', ['a', 'b', 'c']);
  return x * x + Math.abs(Math.log10(lr) + 3) + n / 8 + s + (c === 'b' ? 0 : 1);
}

async function run(sampler: Sampler, n = 40) {
  const study = await createStudy({ sampler });
  await study.optimize(objective, { nTrials: n });
  return study;
}

test('QMCSampler: deterministic under a seed, consecutive indices, values on their distributions, another seed differs', async () => {
  const a = await run(new QMCSampler({ seed: 11 }));
  const b = await run(new QMCSampler({ seed: 11 }));
  const c = await run(new QMCSampler({ seed: 12 }));
  assert.deepEqual(a.trials.map((t) => t.params), b.trials.map((t) => t.params));
  assert.notDeepEqual(a.trials.slice(1).map((t) => t.params), c.trials.slice(1).map((t) => t.params));
  // The first trial is random (the space is learnt from it); the others take indices 0, 1, 2, ...
  assert.deepEqual(a.trials.slice(1).map((t) => t.systemAttrs[QMC_INDEX_KEY]), a.trials.slice(1).map((_, i) => i));
  for (const t of a.trials) {
    const p = t.params as Record<string, number | string>;
    assert.ok((p['x'] as number) >= -2 && (p['x'] as number) <= 2);
    assert.ok((p['lr'] as number) >= 1e-5 && (p['lr'] as number) <= 1e-1);
    assert.ok(Number.isInteger(p['n']) && (p['n'] as number) >= 1 && (p['n'] as number) <= 8);
    assert.ok([0, 0.25, 0.5, 0.75, 1].includes(p['s'] as number), `s = ${p['s']}`);
    assert.ok(['a', 'b', 'c'].includes(p['c'] as string));
  }
  // Stratification: over 32 QMC trials every one of the 8 ints appears exactly 4 times (a net in that coordinate).
  const ns = a.trials.slice(1, 33).map((t) => t.params['n'] as number);
  for (let v = 1; v <= 8; v++) assert.equal(ns.filter((x) => x === v).length, 4, `n = ${v} in ${ns}`);
  // Random search has no such balance (checked so the assertion above can fail).
  const r = await run(new RandomSampler({ seed: 11 }), 33);
  const rn = r.trials.slice(1, 33).map((t) => t.params['n'] as number);
  assert.ok([1, 2, 3, 4, 5, 6, 7, 8].some((v) => rn.filter((x) => x === v).length !== 4));
});

test('QMCSampler: without a seed, two samplers of the same study draw the same scrambled sequence', async () => {
  const s1 = new QMCSampler();
  const s2 = new QMCSampler();
  const study = await createStudy({ sampler: s1 });
  await study.optimize(objective, { nTrials: 3 });
  const t = study.ask();
  objective(t); // suggests every parameter, so t.params shows them
  const fromS2 = s2.sampleRelative(study, study.trials.find((x) => x.trialId === t.trialId) ?? study.trials[study.trials.length - 1]!, s2.inferRelativeSearchSpace(study));
  assert.deepEqual(fromS2, Object.fromEntries(Object.keys(fromS2).map((k) => [k, t.params[k]])), JSON.stringify([fromS2, t.params]));
  assert.throws(() => new QMCSampler({ scramble: 'yes' } as never), /scramble/);
  assert.throws(() => new QMCSampler({ sead: 1 } as never), /unknown option "sead"/);
});
