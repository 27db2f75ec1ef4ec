/**
 * Importances off the server's event loop: fANOVA fits 64 deep trees (seconds at a few thousand
 * trials), which would otherwise stall every page's live stream. The server posts
 * `{ id, kind, directions, trials, objective }` (trials as structured clones of FrozenTrial) and gets
 * `{ id, importances, ms }` or `{ id, error }` back.
 */
import { parentPort } from 'node:worker_threads';
import { FanovaImportanceEvaluator, getParamImportances, MeanDecreaseImpurityImportanceEvaluator, PedAnovaImportanceEvaluator, type ImportanceEvaluator } from '../importance/index.js';
import type { PlotTrial } from '../visualization/data.js';
import type { StudyDirection } from '../storage/storage.js';

export interface ImportanceJob {
  id: number;
  kind: 'fanova' | 'mdi' | 'ped-anova';
  directions: StudyDirection[];
  trials: PlotTrial[];
  objective: number;
}

export function computeImportances(job: Omit<ImportanceJob, 'id'>): { importances: Record<string, number>; ms: number } {
  const evaluators: Record<ImportanceJob['kind'], () => ImportanceEvaluator> = {
    fanova: () => new FanovaImportanceEvaluator({ seed: 0 }),
    mdi: () => new MeanDecreaseImpurityImportanceEvaluator({ seed: 0 }),
    'ped-anova': () => new PedAnovaImportanceEvaluator(),
  };
  const k = job.objective;
  const sign = job.directions[k] === 'maximize' ? -1 : 1;
  const t0 = performance.now();
  const importances = getParamImportances(
    { directions: job.directions, trials: job.trials },
    { evaluator: evaluators[job.kind](), target: (t) => (t.values && t.values.length > k ? sign * t.values[k]! : null) },
  );
  return { importances, ms: Math.round(performance.now() - t0) };
}

parentPort?.on('message', (job: ImportanceJob) => {
  try {
    parentPort!.postMessage({ id: job.id, ...computeImportances(job) });
  } catch (e) {
    parentPort!.postMessage({ id: job.id, error: (e as Error).message });
  }
});
