/**
 * Tune the iris MLP in one process: TPE proposes hyperparameters, the median pruner stops trials whose
 * validation loss lags behind the others at the same epoch.
 *
 *   npx tsx examples/iris-ts/main.ts            (IRIS_TRIALS=10 for a shorter run)
 */
import { MedianPruner, TPESampler, createStudy } from '../../src/index.js';
import objective from './objective.js';

const nTrials = Number(process.env['IRIS_TRIALS'] ?? 60);
const study = await createStudy({
  studyName: 'iris-mlp',
  direction: 'minimize',
  sampler: new TPESampler({ seed: 7 }),
  pruner: new MedianPruner({ nStartupTrials: 5, nWarmupSteps: 10 }),
});
await study.optimize(objective, { nTrials });

const best = study.bestTrial;
const pruned = study.getTrials({ states: ['PRUNED'] }).length;
console.log(`Finished ${study.trials.length} trials (${pruned} pruned).`);
console.log(`Best trial ${best.number}: validation loss ${best.value!.toFixed(4)}, accuracy ${String(best.userAttrs['valid_accuracy'])}`);
console.log(`Best hyperparameters: ${JSON.stringify(best.params)}`);
