/**
 * Constraints through the public API, with Optuna's semantics: `constraintsFunc` runs when a trial
 * finishes COMPLETE or PRUNED and its values land on the trial as the system attr `constraints`;
 * feasible means every value <= 0; `bestTrial` / `bestTrials` skip infeasible trials; TPE, NSGA-II and
 * GP steer towards the feasible region.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONSTRAINTS_KEY, GPSampler, NSGAIISampler, RandomSampler, TPESampler, createStudy, isFeasible, setVerbosity, type FrozenTrial, type Sampler, type Trial } from '../../src/index.js';

setVerbosity('silent');

// min x^2 + y^2 subject to x + y >= 1: the unconstrained optimum (0, 0) is infeasible; the constrained one is 0.5 at (0.5, 0.5).
const objective = (t: Trial): number => t.suggestFloat('x', -2, 2) ** 2 + t.suggestFloat('y', -2, 2) ** 2;
const constraint = (t: FrozenTrial): number[] => [1 - (t.params['x'] as number) - (t.params['y'] as number)];

test('bestTrial and bestTrials skip infeasible trials; constraint values are stored on the trial', async () => {
  const study = await createStudy({ sampler: new TPESampler({ seed: 0, constraintsFunc: constraint }) });
  await study.enqueueTrial({ x: 0, y: 0 }); // the best value, infeasible
  await study.enqueueTrial({ x: 1, y: 1 }); // feasible, value 2
  await study.enqueueTrial({ x: 0.6, y: 0.5 }); // feasible, value 0.61
  await study.optimize(objective, { nTrials: 3 });
  assert.deepEqual(study.trials.map((t) => t.systemAttrs[CONSTRAINTS_KEY]), [[1], [-1], [1 - 0.6 - 0.5]]);
  assert.equal(isFeasible(study.trials[0]!), false);
  assert.equal(study.bestTrial.number, 2, 'the infeasible trial 0 has the lowest value but is not the best');
  assert.deepEqual(study.bestTrials.map((t) => t.number), [2]);

  const none = await createStudy({ sampler: new RandomSampler({ seed: 0 }) });
  const t = none.ask();
  t.suggestFloat('x', -2, 2);
  none.storage.setTrialSystemAttr(none.studyId, t.trialId, CONSTRAINTS_KEY, [3]);
  await none.tell(t, 1); // logging the finished trial must not need a feasible best
  assert.throws(() => none.bestTrial, /none of the 1 completed trials is feasible/);
  assert.deepEqual(none.bestTrials, []);
});

test('multi-objective: bestTrials is the Pareto front of the feasible trials (NSGA-II)', async () => {
  const study = await createStudy({
    directions: ['minimize', 'minimize'],
    sampler: new NSGAIISampler({ seed: 1, populationSize: 8, constraintsFunc: (t) => [0.2 - (t.params['x'] as number)] }),
  });
  await study.optimize((t) => {
    const x = t.suggestFloat('x', 0, 1);
    return [x, (1 - x) ** 2];
  }, { nTrials: 40 });
  const front = study.bestTrials;
  assert.ok(front.length > 0);
  for (const t of front) assert.ok((t.params['x'] as number) >= 0.2, `trial ${t.number} with x=${t.params['x']} is infeasible but on the front`);
  const infeasible = study.trials.filter((t) => !isFeasible(t));
  assert.ok(infeasible.length > 0, 'the test needs some infeasible trials to mean anything');
});

async function feasibleShare(sampler: Sampler, n: number): Promise<{ late: number; best: number }> {
  const study = await createStudy({ sampler });
  await study.optimize(objective, { nTrials: n });
  const late = study.trials.slice(n / 2);
  // Judged by the constraint itself: a sampler without constraintsFunc stores no values (all 'feasible').
  return { late: late.filter((t) => constraint(t)[0]! <= 0).length / late.length, best: study.bestValue };
}

test('TPE and GP with constraintsFunc sample mostly feasible points once they have learned', async () => {
  // Random search is feasible a bit under half the time here (x + y >= 1 on [-2, 2]^2: 9/32 of the area).
  const random = await feasibleShare(new RandomSampler({ seed: 2 }), 40);
  const tpe = await feasibleShare(new TPESampler({ seed: 2, constraintsFunc: constraint }), 40);
  const gp = await feasibleShare(new GPSampler({ seed: 2, constraintsFunc: constraint }), 30);
  assert.ok(tpe.late > random.late, `TPE late feasible share ${tpe.late} vs random ${random.late}`);
  assert.ok(gp.late >= 0.5, `GP late feasible share ${gp.late}`);
  assert.ok(gp.best < 0.6, `GP constrained best ${gp.best} should approach 0.5`);
  assert.ok(tpe.best < 0.8, `TPE constrained best ${tpe.best}`);
});

test('constraint functions returning bad values are refused with a message', async () => {
  const study = await createStudy({ sampler: new TPESampler({ seed: 0, constraintsFunc: () => [Number.NaN] }) });
  await assert.rejects(study.optimize(objective, { nTrials: 1 }), /constraintsFunc returned NaN at index 0/);
  assert.throws(() => new TPESampler({ constraintsFunc: 3 as never }), /constraintsFunc must be a function/);
});
