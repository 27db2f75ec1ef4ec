/**
 * The checkpoint requests of the line protocols (command objectives and `peertune serve`), in one
 * place: `save_checkpoint {path, step?, metrics?}` -> `{checkpoint: {seq, step, hash, size, kind}}`,
 * and `get_checkpoint` -> `{checkpoint: {path, step, metrics, trial_id} | null}` (this trial's latest,
 * else that of the trial it retries or resumes, fetched from a peer that holds it).
 */
import path from 'node:path';
import { PeertuneError } from '../errors.js';
import type { Trial } from '../trial.js';

export class CheckpointRequestError extends PeertuneError {
  override name = 'CheckpointRequestError';
}

export async function saveCheckpointRequest(trial: Trial, req: Record<string, unknown>, cwd?: string): Promise<Record<string, unknown>> {
  const p = req['path'];
  if (typeof p !== 'string' || p.length === 0 || p.length > 4096) throw new CheckpointRequestError('save_checkpoint needs "path", the file or directory to save');
  const step = req['step'];
  if (step !== undefined && step !== null && !(Number.isSafeInteger(step) && (step as number) >= 0)) throw new CheckpointRequestError(`save_checkpoint: "step" must be an integer >= 0, got ${JSON.stringify(step)}`);
  const metrics = req['metrics'];
  if (metrics !== undefined && metrics !== null && (typeof metrics !== 'object' || Array.isArray(metrics))) throw new CheckpointRequestError('save_checkpoint: "metrics" must be an object of numbers, strings or booleans');
  const ref = await trial.saveCheckpoint(path.resolve(cwd ?? process.cwd(), p), {
    ...(typeof step === 'number' ? { step } : {}),
    ...(metrics ? { metrics: metrics as Record<string, unknown> } : {}),
  });
  return { checkpoint: { seq: ref.seq, step: ref.step, hash: ref.hash, size: ref.size, kind: ref.kind } };
}

export async function getCheckpointRequest(trial: Trial): Promise<Record<string, unknown>> {
  const ck = await trial.getCheckpoint();
  return { checkpoint: ck ? { path: ck.path, step: ck.step, metrics: ck.metrics, trial_id: ck.trialId } : null };
}
