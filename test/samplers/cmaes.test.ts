/**
 * CmaEsSampler: deterministic under a seed; converges on a sphere far faster than random search;
 * handles ints (rounded) with categoricals sampled independently; restarts (IPOP) double the
 * population once a run has converged; the eigen-decomposition it relies on is right; bad options
 * and several objectives are refused with a message naming the problem.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CMA_KEY, CmaEsSampler, createStudy, RandomSampler, setVerbosity, type Sampler, type Trial } from '../../src/index.js';
import { symmetricEigen } from '../../src/samplers/cmaes.js';

setVerbosity('silent');

const sphere = (t: Trial): number => {
  let s = 0;
  for (let i = 0; i < 4; i++) s += (t.suggestFloat(`x${i}`, -5, 5) - 1.5) ** 2;
  return s;
};

async function best(sampler: Sampler, nTrials: number, objective = sphere): Promise<number> {
  const study = await createStudy({ sampler });
  await study.optimize(objective, { nTrials });
  return study.bestValue;
}

test('symmetricEigen: A v = lambda v for a random symmetric matrix', () => {
  const n = 5;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = a[j * n + i] = Math.sin(1 + i * 7 + j * 3);
  const { values, vectors } = symmetricEigen(a, n);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < n; i++) {
      let av = 0;
      for (let j = 0; j < n; j++) av += a[i * n + j]! * vectors[j * n + k]!;
      assert.ok(Math.abs(av - values[k]! * vectors[i * n + k]!) < 1e-9);
    }
  }
});

test('CmaEsSampler: same seed, same trials; another seed differs', async () => {
  const run = async (seed: number) => {
    const study = await createStudy({ sampler: new CmaEsSampler({ seed }) });
    await study.optimize(sphere, { nTrials: 30 });
    return study.trials.map((t) => t.params);
  };
  const a = await run(4);
  assert.deepEqual(a, await run(4));
  assert.notDeepEqual(a, await run(5));
});

test('CmaEsSampler converges on a 4-D sphere far faster than random search (3 seeds, 160 trials)', async () => {
  const cma: number[] = [];
  const random: number[] = [];
  for (const seed of [0, 1, 2]) {
    cma.push(await best(new CmaEsSampler({ seed }), 160));
    random.push(await best(new RandomSampler({ seed }), 160));
  }
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[1]!;
  assert.ok(med(cma) < 0.1, `CMA-ES best after 160 trials: ${cma}`);
  assert.ok(med(cma) < med(random) / 20, `CMA-ES ${cma} vs random ${random}`);
});

test('ints are rounded onto their grid, categoricals sampled independently, and every trial records its generation', async () => {
  const study = await createStudy({ sampler: new CmaEsSampler({ seed: 3 }) });
  await study.optimize((t) => {
    const n = t.suggestInt('n', -10, 10);
    const s = t.suggestInt('s', 0, 100, { step: 5 });
    const c = t.suggestCategorical('c', ['a', 'b']);
    const x = t.suggestFloat('x', 1e-3, 10, { log: true });
    return (n - 3) ** 2 + ((s - 40) / 5) ** 2 + (c === 'a' ? 0 : 1) + Math.log10(x) ** 2;
  }, { nTrials: 120 });
  for (const t of study.trials) {
    const p = t.params as Record<string, number | string>;
    assert.ok(Number.isInteger(p['n']) && (p['n'] as number) >= -10 && (p['n'] as number) <= 10);
    assert.ok((p['s'] as number) % 5 === 0 && (p['s'] as number) >= 0 && (p['s'] as number) <= 100);
    assert.ok((p['x'] as number) >= 1e-3 && (p['x'] as number) <= 10);
  }
  const tags = study.trials.slice(1).map((t) => t.systemAttrs[CMA_KEY] as { r: number; g: number });
  assert.ok(tags.every((g) => g && Number.isInteger(g.g)), 'every trial after the first is tagged with its generation');
  assert.ok(Math.max(...tags.map((g) => g.g)) >= 8, 'generations advance as trials complete');
  const bp = study.bestTrial.params;
  assert.equal(bp['n'], 3);
  assert.equal(bp['s'], 40);
});

test('IPOP: after a run converges, the next one starts with a doubled population', async () => {
  // A 1-D problem with a flat optimum converges within a few hundred trials.
  const study = await createStudy({ sampler: new CmaEsSampler({ seed: 1, popsize: 4 }) });
  await study.optimize((t) => Math.round(t.suggestFloat('x', 0, 1) * 4), { nTrials: 260 });
  const tags = study.trials.slice(1).map((t) => t.systemAttrs[CMA_KEY] as { r: number; g: number });
  const restarts = Math.max(...tags.map((g) => g.r));
  assert.ok(restarts >= 1, `no restart in 260 trials (last tag ${JSON.stringify(tags[tags.length - 1])})`);
  // Restart r has 4 * 2^r trials per generation: count a closed generation of restart 1.
  const gen0r1 = tags.filter((g) => g.r === 1 && g.g === 0).length;
  assert.ok(gen0r1 >= 8, `restart 1, generation 0 took ${gen0r1} trials; its population is 8`);
});

test('bad options and several objectives are refused with a message naming the problem', async () => {
  assert.throws(() => new CmaEsSampler({ sigma0: 0 }), /sigma0/);
  assert.throws(() => new CmaEsSampler({ popsize: 1 }), /popsize/);
  assert.throws(() => new CmaEsSampler({ sigma: 1 } as never), /unknown option "sigma"/);
  const study = await createStudy({ directions: ['minimize', 'minimize'], sampler: new CmaEsSampler({ seed: 0 }) });
  await assert.rejects(study.optimize((t) => [t.suggestFloat('x', 0, 1), t.suggestFloat('y', 0, 1)], { nTrials: 3 }), /single-objective/);
});
