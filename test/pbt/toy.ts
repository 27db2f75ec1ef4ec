/**
 * A problem whose optimum needs a hyperparameter schedule: SGD on a noisy quadratic (10 dimensions,
 * curvatures 0.2 to 2, unit gradient noise). A large learning rate gets close fast but settles on a
 * noise floor proportional to it; a small one is precise but slow. So every fixed learning rate loses to
 * a decaying schedule, which PBT can find (bottom members clone better ones and shrink or grow the rate)
 * and random search or TPE over one fixed rate cannot. The state is small JSON, checkpointed as a file.
 * Deterministic: the noise at a step comes from (noise key, step).
 */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createStudy, NopPruner, RandomSampler, Rng, TPESampler, TrialPruned, type Trial } from '../../src/index.js';

export const DIMS = 10;
export const CURVATURE = Array.from({ length: DIMS }, (_, i) => 0.2 + (1.8 * i) / (DIMS - 1));

export interface ToyState {
  theta: number[];
}

export function initialState(): ToyState {
  return { theta: Array.from({ length: DIMS }, () => 3) };
}

/** The loss the study minimises: mean of a_i * theta_i^2 / 2. */
export function loss(s: ToyState): number {
  let sum = 0;
  for (let i = 0; i < DIMS; i++) sum += (CURVATURE[i]! * s.theta[i]! ** 2) / 2;
  return sum / DIMS;
}

/** One SGD step with learning rate `lr` on a gradient with unit noise drawn from (key, step). */
export function sgdStep(s: ToyState, lr: number, key: string, step: number): ToyState {
  const rng = Rng.from(key, step, 'toy-noise');
  return { theta: s.theta.map((t, i) => t - lr * (CURVATURE[i]! * t + rng.normal())) };
}

export interface ToyRun {
  /** Steps trained by every trial of the study (the budget a comparison equalises). */
  steps: number;
}

/**
 * The objective: `steps` SGD steps with the trial's learning rate, starting from the trial's checkpoint
 * when it has one (a PBT continuation, a retry), saving the state every `saveEvery` steps, reporting the
 * loss every step and asking the pruner (PBT) before each step but the last.
 */
export function toyObjective(dir: string, opts: { steps: number; saveEvery: number; run: ToyRun; stepMs?: number; onStart?: (trial: Trial, start: number, state: ToyState) => void }) {
  return async (trial: Trial): Promise<number> => {
    const lr = trial.suggestFloat('lr', 1e-3, 1, { log: true });
    const ck = await trial.getCheckpoint();
    let state = ck ? (JSON.parse(await readFile(ck.path, 'utf8')) as ToyState) : initialState();
    const start = ck ? ck.step! + 1 : 1;
    opts.onStart?.(trial, start, state);
    for (let step = start; step <= opts.steps; step++) {
      // A training step that takes time (stepMs) lets members run side by side as real ones do.
      if (opts.stepMs) await new Promise((r) => setTimeout(r, opts.stepMs));
      state = sgdStep(state, lr, trial.trialId, step);
      opts.run.steps++;
      const value = loss(state);
      if (step % opts.saveEvery === 0) {
        const f = path.join(dir, `${trial.trialId.replace(/[^A-Za-z0-9]/g, '_')}.json`);
        await writeFile(f, JSON.stringify(state));
        await trial.saveCheckpoint(f, { step, metrics: { loss: value } });
      }
      trial.report(value, step);
      if (step < opts.steps && trial.shouldPrune()) throw new TrialPruned(`exploited at step ${step}`);
    }
    return loss(state);
  };
}

/**
 * The baselines of a comparison: random search and TPE (4 startup trials) over one fixed learning rate
 * per trial, `nTrials` whole runs of `steps` steps each; returns each one's best final loss.
 */
export async function baselines(seed: number, nTrials: number, steps: number, dir: string): Promise<{ random: number; tpe: number }> {
  const out = { random: 0, tpe: 0 };
  for (const [name, sampler] of [['random', new RandomSampler({ seed })], ['tpe', new TPESampler({ seed, nStartupTrials: 4 })]] as const) {
    const s = await createStudy({ sampler, pruner: new NopPruner() });
    await s.optimize(toyObjective(dir, { steps, saveEvery: Infinity, run: { steps: 0 } }), { nTrials });
    out[name] = s.bestValue;
  }
  return out;
}
