import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createStudy, RandomSampler, setVerbosity, type Sampler } from '../../src/index.js';
import { NSGAIISampler } from '../../src/samplers/nsga2.js';

setVerbosity('warning');

/** ZDT1 with 4 variables: the Pareto front is f2 = 1 - sqrt(f1), x2..x4 = 0. */
function zdt1(x: number[]): [number, number] {
  const f1 = x[0]!;
  const g = 1 + (9 * x.slice(1).reduce((a, b) => a + b, 0)) / (x.length - 1);
  return [f1, g * (1 - Math.sqrt(f1 / g))];
}

/** Area dominated by the points (minimize both) up to the reference point. */
function hypervolume2d(points: number[][], ref: [number, number]): number {
  const pts = points.filter((p) => p[0]! < ref[0] && p[1]! < ref[1]).sort((a, b) => a[0]! - b[0]!);
  let hv = 0;
  let bestY = ref[1];
  for (const [x, y] of pts) {
    if (y! < bestY) {
      hv += (ref[0] - x!) * (bestY - y!);
      bestY = y!;
    }
  }
  return hv;
}

async function run(sampler: Sampler): Promise<number> {
  const study = await createStudy({ directions: ['minimize', 'minimize'], sampler });
  await study.optimize((t) => zdt1([0, 1, 2, 3].map((i) => t.suggestFloat(`x${i}`, 0, 1))), { nTrials: 400 });
  return hypervolume2d(study.bestTrials.map((t) => [...t.values!]), [1.1, 11]);
}

test('NSGA-II beats random search on ZDT1 hypervolume (5 seeds)', async () => {
  let wins = 0;
  for (let seed = 0; seed < 5; seed++) {
    const hvN = await run(new NSGAIISampler({ seed, populationSize: 20 }));
    const hvR = await run(new RandomSampler({ seed }));
    if (hvN > hvR) wins++;
  }
  assert.ok(wins >= 4, `NSGA-II won ${wins}/5`);
});

test('NSGA-II stamps generations of populationSize trials and validates options', async () => {
  const study = await createStudy({ directions: ['minimize', 'maximize'], sampler: new NSGAIISampler({ seed: 1, populationSize: 5 }) });
  await study.optimize((t) => { const x = t.suggestFloat('x', 0, 1); return [x, x * x]; }, { nTrials: 12 });
  const gens = study.trials.map((t) => t.systemAttrs['nsga2:generation']);
  assert.deepEqual(gens, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2]);
  assert.throws(() => new NSGAIISampler({ populationSize: 1 }), /populationSize must be an integer >= 2/);
  assert.throws(() => new NSGAIISampler({ crossoverProb: 2 }), /crossoverProb must be in \[0, 1\]/);
});
