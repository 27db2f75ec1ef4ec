/**
 * Multi-objective TPE (both splits: whole fronts cut by age, and Optuna's hypervolume subset selection
 * with hypervolume-contribution weights): runs, is deterministic per seed, beats random search on ZDT1
 * hypervolume, and honours constraints.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RandomSampler, TPESampler, createStudy, hypervolume, isFeasible, setVerbosity, type Sampler, type TPESamplerOptions, type Trial } from '../../src/index.js';

setVerbosity('silent');

function zdt1(t: Trial): [number, number] {
  const x = [0, 1, 2, 3, 4].map((i) => t.suggestFloat(`x${i}`, 0, 1));
  const g = 1 + (9 * x.slice(1).reduce((a, b) => a + b, 0)) / (x.length - 1);
  return [x[0]!, g * (1 - Math.sqrt(x[0]! / g))];
}

async function run(sampler: Sampler, n: number) {
  const study = await createStudy({ directions: ['minimize', 'minimize'], sampler });
  await study.optimize(zdt1, { nTrials: n });
  return study;
}

const splits: TPESamplerOptions['multiObjectiveSplit'][] = ['rank', 'hypervolume'];

test('multi-objective TPE is deterministic per seed (both splits)', async () => {
  for (const multiObjectiveSplit of splits) {
    const a = (await run(new TPESampler({ seed: 5, multiObjectiveSplit }), 30)).trials.map((t) => t.params);
    const b = (await run(new TPESampler({ seed: 5, multiObjectiveSplit }), 30)).trials.map((t) => t.params);
    const c = (await run(new TPESampler({ seed: 6, multiObjectiveSplit }), 30)).trials.map((t) => t.params);
    assert.deepEqual(a, b, multiObjectiveSplit);
    assert.notDeepEqual(a, c, multiObjectiveSplit);
  }
  // The two splits are really different policies: same seed, different suggestions after startup.
  const r = (await run(new TPESampler({ seed: 5, multiObjectiveSplit: 'rank' }), 40)).trials.map((t) => t.params);
  const h = (await run(new TPESampler({ seed: 5, multiObjectiveSplit: 'hypervolume' }), 40)).trials.map((t) => t.params);
  assert.notDeepEqual(r.slice(10), h.slice(10));
});

test('multi-objective TPE beats random search on ZDT1 hypervolume at 80 trials (5 seeds, both splits)', async () => {
  const ref = [1.1, 11];
  const hv = async (s: Sampler) => hypervolume((await run(s, 80)).bestTrials.map((t) => [...t.values!]), ref);
  for (const multiObjectiveSplit of splits) {
    let wins = 0;
    for (let seed = 0; seed < 5; seed++) if ((await hv(new TPESampler({ seed, multiObjectiveSplit }))) > (await hv(new RandomSampler({ seed })))) wins++;
    assert.ok(wins >= 4, `${multiObjectiveSplit}: TPE won ${wins}/5 seeds against random search`);
  }
});

test('multi-objective TPE with constraints: the front holds only feasible trials, and it finds some', async () => {
  const study = await createStudy({
    directions: ['minimize', 'minimize'],
    sampler: new TPESampler({ seed: 3, multiObjectiveSplit: 'hypervolume', constraintsFunc: (t) => [0.3 - (t.params['x0'] as number)] }),
  });
  await study.optimize(zdt1, { nTrials: 40 });
  const front = study.bestTrials;
  assert.ok(front.length > 0);
  for (const t of front) assert.ok(isFeasible(t) && (t.params['x0'] as number) >= 0.3);
  const late = study.trials.slice(20);
  assert.ok(late.filter(isFeasible).length >= 14, `only ${late.filter(isFeasible).length}/20 late trials are feasible`);
});
