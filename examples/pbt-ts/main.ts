/**
 * Population-based training of a TypeScript model's learning rate and momentum (examples/pbt-ts):
 * 8 members train an MLP on a spiral; every 20 steps a member in the bottom quarter continues as a new
 * trial from a top member's checkpoint with that member's values perturbed (x1.2 or x0.8, or drawn
 * anew), clipped to their ranges. Prints the best member's schedule (its PBT policy) and the lineage.
 *
 *   npx tsx examples/pbt-ts/main.ts          (PBT_STEPS=100 for a shorter run)
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, floatDistribution, PopulationBasedTraining, policyOf, RandomSampler, setVerbosity, TrialPruned, type Trial } from '../../src/index.js';
import { evaluate, initialState, spiral, trainStep, type State } from './model.js';

setVerbosity((process.env['PEERTUNE_LOG_LEVEL'] as 'info' | undefined) ?? 'warning');
const STEPS = Number(process.env['PBT_STEPS'] ?? 300);
const INTERVAL = 20;
const train = spiral(100, 1);
const valid = spiral(100, 2);
const dir = await mkdtemp(path.join(os.tmpdir(), 'pbt-example-'));

const lr = floatDistribution('lr', 1e-3, 10, { log: true });
const momentum = floatDistribution('momentum', 0, 0.99);
const study = await createStudy({
  direction: 'minimize',
  sampler: new RandomSampler({ seed: 1 }),
  pruner: new PopulationBasedTraining({ perturbationInterval: INTERVAL, populationSize: 8, seed: 1, hyperparamMutations: { lr, momentum } }),
  checkpointConfig: { numToKeep: 2 },
});

async function objective(trial: Trial): Promise<number> {
  const rate = trial.suggestFloat('lr', 1e-3, 10, { log: true });
  const mom = trial.suggestFloat('momentum', 0, 0.99);
  const ck = await trial.getCheckpoint(); // a continuation starts from the member it cloned
  const state: State = ck ? JSON.parse(await readFile(ck.path, 'utf8')) : initialState(trial.number);
  let loss = evaluate(state, valid).loss;
  for (let step = (ck?.step ?? 0) + 1; step <= STEPS; step++) {
    trainStep(state, train, rate, mom);
    loss = evaluate(state, valid).loss;
    if (!Number.isFinite(loss)) loss = 1e3;
    if (step % INTERVAL === 0) {
      const file = path.join(dir, `${trial.trialId.replace(/\W/g, '_')}.json`);
      await writeFile(file, JSON.stringify(state));
      await trial.saveCheckpoint(file, { step, metrics: { loss } }); // at least once per perturbation interval
    }
    trial.report(loss, step);
    if (step < STEPS && trial.shouldPrune()) throw new TrialPruned(); // exploited: continues as a new trial
  }
  trial.setUserAttr('accuracy', evaluate(state, valid).accuracy);
  return loss;
}

await study.optimize(objective, { nJobs: 4 });
const best = study.bestTrial;
console.log(`Best member: trial ${best.number}, validation loss ${best.value!.toFixed(4)}, accuracy ${best.userAttrs['accuracy']}, ${study.trials.length} trials for 8 members.`);
console.log(`\nIts schedule (peertune pbt-policy --trial ${best.number}: [exploited trial, cloned trial, step, cloned step, cloned config, new config]):`);
const numberOf = new Map(study.trials.map((t) => [t.trialId, t.number] as const));
const fmt = (c: Record<string, unknown>) => JSON.stringify(Object.fromEntries(Object.entries(c).map(([k, v]) => [k, typeof v === 'number' ? Number(v.toPrecision(3)) : v])));
for (const l of policyOf(best.trialId, study.trials)) {
  console.log(`  [${numberOf.get(l.trial)}, ${numberOf.get(l.clonedTrial)}, ${l.step}, ${l.clonedStep}, ${fmt(l.clonedConfig)}, ${fmt(l.newConfig)}]`);
}
console.log('\nLineage (as `peertune trials` shows it):');
const { rows } = study.trialsDataframe();
for (const r of rows) {
  if (r['pbt_parent'] === null && r['state'] !== 'COMPLETE') continue;
  console.log(`  trial ${r['number']} member ${r['pbt_member']} ${r['state']} value ${Number(r['value']).toFixed(4)}${r['pbt_parent'] !== null ? ` <- trial ${r['pbt_parent']} at step ${r['pbt_start_step']}: ${r['pbt_perturbation']}` : ''}`);
}
await rm(dir, { recursive: true, force: true });
