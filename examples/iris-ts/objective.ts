/**
 * The objective: train the iris MLP with the trial's hyperparameters, report the validation loss every
 * few epochs so the study's pruner can stop hopeless trials early, and return the final validation loss.
 * Run it with `peertune worker ... examples/iris-ts/objective.ts` or from `main.ts`.
 */
import { TrialPruned, type Trial } from '../../src/index.js';
import { MLP, loadIris, type Hyperparameters } from './mlp.js';

const data = loadIris();
const EPOCHS = Number(process.env['IRIS_EPOCHS'] ?? 60);
const REPORT_EVERY = 5;

export default function objective(trial: Trial): number {
  const hp: Hyperparameters = {
    hidden: trial.suggestInt('hidden', 2, 32, { log: true }),
    learningRate: trial.suggestFloat('learning_rate', 1e-3, 1, { log: true }),
    momentum: trial.suggestFloat('momentum', 0, 0.95),
    weightDecay: trial.suggestFloat('weight_decay', 1e-6, 1e-1, { log: true }),
    batchSize: trial.suggestCategorical('batch_size', [8, 16, 32, 105]),
    activation: trial.suggestCategorical('activation', ['relu', 'tanh'] as const),
  };
  const model = new MLP(4, 3, hp, trial.number + 1);
  let valid = model.evaluate(data.validX, data.validY);
  for (let epoch = 1; epoch <= EPOCHS; epoch++) {
    model.trainEpoch(data.trainX, data.trainY);
    if (epoch % REPORT_EVERY !== 0) continue;
    valid = model.evaluate(data.validX, data.validY);
    const loss = Number.isFinite(valid.loss) ? valid.loss : 1e3;
    trial.report(loss, epoch);
    if (trial.shouldPrune()) throw new TrialPruned(`pruned at epoch ${epoch}`);
  }
  trial.setUserAttr('valid_accuracy', valid.accuracy);
  return Number.isFinite(valid.loss) ? valid.loss : 1e3;
}
