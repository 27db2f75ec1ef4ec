/**
 * Bounds on a study's stored settings (its `sampler` / `pruner` system attrs), checked when a worker
 * reads them from the replica (issue 15 F4). Only the study's creator can write them now, but a
 * creator is a peer like any other: a setting that would make every joining worker spend minutes or
 * gigabytes per trial (TPE with 1e9 candidates) is refused with an error naming the option, before
 * any sampler or pruner is built. The bounds are far above what honest studies use (Optuna's defaults
 * are 24 candidates, a population of 50); an option given on this peer's own command line
 * (`--sampler-options`) is the user's choice and is not bounded here.
 */
import { UsageError } from './errors.js';

/** Integer options that size work per trial or memory, by algorithm: the largest value taken from a study. */
export const SETTING_BOUNDS: Record<string, Record<string, number>> = {
  tpe: { nEiCandidates: 10_000, nStartupTrials: 1_000_000 },
  random: {},
  grid: {},
  nsga2: { populationSize: 100_000 },
  median: { nStartupTrials: 1_000_000, nWarmupSteps: 1e12, intervalSteps: 1e12, nMinTrials: 1_000_000 },
  percentile: { nStartupTrials: 1_000_000, nWarmupSteps: 1e12, intervalSteps: 1e12, nMinTrials: 1_000_000 },
  threshold: { nWarmupSteps: 1e12, intervalSteps: 1e12 },
  patient: { patience: 1_000_000 },
  'successive-halving': { minResource: 1e12, reductionFactor: 1_000, minEarlyStoppingRate: 1_000 },
  hyperband: { minResource: 1e12, maxResource: 1e12, reductionFactor: 1_000 },
};

/** A grid's cells (product of its value lists) and a whole setting's JSON text, at most. */
export const MAX_GRID_CELLS = 10_000_000;
export const MAX_SETTING_BYTES = 16 * 1024;

/**
 * Throws a UsageError naming the study, the setting and the option when a stored setting is out of
 * bounds (a number beyond its bound, or not finite; a grid too large; a setting too big).
 */
export function checkStoredSetting(kind: 'sampler' | 'pruner', spec: { name: string; options: Record<string, unknown> }, study: string): void {
  const where = `study "${study}" stores ${kind} "${spec.name.slice(0, 40)}"`;
  const fix = `(a study's ${kind} comes from its creator; override it on this peer with --${kind} and --${kind}-options)`;
  let text: string;
  try {
    text = JSON.stringify(spec.options) ?? '{}';
  } catch {
    throw new UsageError(`${where} with options that are not JSON ${fix}`);
  }
  if (text.length > MAX_SETTING_BYTES) throw new UsageError(`${where} with ${text.length} bytes of options, more than ${MAX_SETTING_BYTES} ${fix}`);
  const bounds = SETTING_BOUNDS[spec.name] ?? {};
  for (const [k, max] of Object.entries(bounds)) {
    const v = spec.options[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > max) {
      throw new UsageError(`${where} with ${k} = ${typeof v === 'number' ? v : JSON.stringify(v)?.slice(0, 40)}, outside the bound ${max} honest studies stay within ${fix}`);
    }
  }
  if (kind === 'pruner' && spec.name === 'patient' && spec.options['wrapped'] && typeof spec.options['wrapped'] === 'object') {
    const w = spec.options['wrapped'] as { name?: unknown; options?: unknown };
    if (typeof w.name === 'string') checkStoredSetting('pruner', { name: w.name, options: (w.options && typeof w.options === 'object' ? w.options : {}) as Record<string, unknown> }, study);
  }
  if (spec.name === 'grid') {
    const space = spec.options['searchSpace'];
    if (space && typeof space === 'object') {
      let cells = 1;
      for (const values of Object.values(space as Record<string, unknown>)) cells *= Array.isArray(values) ? Math.max(1, values.length) : 1;
      if (cells > MAX_GRID_CELLS) throw new UsageError(`${where} with a grid of ${cells} cells, more than ${MAX_GRID_CELLS} ${fix}`);
    }
  }
}
