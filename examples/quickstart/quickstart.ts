/**
 * peertune in one process, exactly like Optuna: no storage, no network, no setup.
 *
 *   npx tsx examples/quickstart/quickstart.ts
 *
 * In your own project, import from 'peertune' instead of '../../src/index.js'.
 */
import { createStudy, type Trial } from '../../src/index.js';

// Minimize a function with a float, an int and a categorical parameter (define-by-run: the search
// space is whatever the objective asks for).
function objective(trial: Trial): number {
  const x = trial.suggestFloat('x', -10, 10);
  const n = trial.suggestInt('n', 1, 5);
  const shape = trial.suggestCategorical('shape', ['bowl', 'ridge']);
  const base = (x - 2) ** 2 + (n - 3) ** 2;
  return shape === 'bowl' ? base : base + 1;
}

const nTrials = Number(process.env['QUICKSTART_TRIALS'] ?? 50);
const study = await createStudy({ direction: 'minimize' });
await study.optimize(objective, { nTrials });

console.log(`Best value: ${study.bestValue.toFixed(4)} (trial ${study.bestTrial.number})`);
console.log(`Best params: ${JSON.stringify(study.bestParams)}`);
