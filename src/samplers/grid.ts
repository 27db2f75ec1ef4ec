/**
 * GridSampler: tries every combination of the given values once, as Optuna's GridSampler does. When
 * a trial starts it claims a grid point nobody has taken yet (finished or in flight, on any peer) and
 * records it in the trial's system attrs (`gridId`, plus `gridSpace`, a fingerprint of the grid so
 * trials of another grid in the same study are not mistaken for ours); the suggest calls then read
 * the point's values. Points are claimed in a random order drawn from (seed, trial id), so peers
 * working on the same grid rarely collide. Once every point is finished the study stops; a trial
 * started after that (a race between peers, or re-running a finished study) repeats a random point,
 * with a warning, as in Optuna.
 */
import { DistributionError, contains, describeDistribution, type Distribution, type ParamValue } from '../distributions.js';
import { logger } from '../logging.js';
import { Rng, randomSeed } from '../rng.js';
import type { FrozenTrial, TrialState } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Sampler, SearchSpace } from './base.js';

export const GRID_ID_ATTR = 'gridId';
export const GRID_SPACE_ATTR = 'gridSpace';

function isGridValue(v: unknown): v is ParamValue {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

/** Tagged so that 1, '1' and true stay different points. */
function valueKey(v: ParamValue): string {
  return `${v === null ? 'null' : typeof v}:${String(v)}`;
}

export class GridSampler implements Sampler {
  readonly seed: number;
  /** Parameter names in sorted order; the last one varies fastest along grid ids (itertools.product order). */
  private readonly names: string[];
  private readonly values: ParamValue[][];
  readonly gridSize: number;
  private readonly fingerprint: string;

  constructor(searchSpace: Record<string, readonly ParamValue[]>, opts: { seed?: number } = {}) {
    if (searchSpace === null || typeof searchSpace !== 'object' || Array.isArray(searchSpace)) {
      throw new TypeError(`GridSampler: searchSpace must be an object mapping parameter names to arrays of values, got ${JSON.stringify(searchSpace)}`);
    }
    this.names = Object.keys(searchSpace).sort();
    this.values = this.names.map((name) => {
      const vs = searchSpace[name];
      if (!Array.isArray(vs) || vs.length === 0) {
        throw new TypeError(`GridSampler: the values for parameter "${name}" must be a non-empty array, got ${JSON.stringify(vs)}`);
      }
      for (const v of vs) {
        if (!isGridValue(v)) {
          throw new TypeError(
            `GridSampler: parameter "${name}" has value ${String(v)}; grid values must be finite numbers, strings, booleans or null`,
          );
        }
      }
      return [...vs];
    });
    this.gridSize = this.values.reduce((n, vs) => n * vs.length, 1);
    if (!Number.isSafeInteger(this.gridSize)) throw new RangeError(`GridSampler: the grid has ${this.gridSize} points, too many to enumerate`);
    if (opts === null || typeof opts !== 'object') throw new TypeError(`GridSampler: options must be an object such as { seed: 1 }, got ${String(opts)}`);
    for (const key of Object.keys(opts)) {
      if (key !== 'seed') throw new TypeError(`GridSampler: unknown option "${key}"; the only option is seed`);
    }
    const seed = opts.seed ?? randomSeed();
    if (typeof seed !== 'number' || !Number.isFinite(seed)) throw new TypeError(`GridSampler: seed must be a finite number, got ${String(seed)}`);
    this.seed = seed;
    const canonical = JSON.stringify(this.names.map((n, i) => [n, this.values[i]!.map(valueKey)]));
    this.fingerprint = Math.floor(Rng.from('grid', canonical).random() * 2 ** 52).toString(36);
  }

  /** The parameter values of a grid point. */
  point(gridId: number): Record<string, ParamValue> {
    const out: Record<string, ParamValue> = {};
    let rest = gridId;
    for (let i = this.names.length - 1; i >= 0; i--) {
      const vs = this.values[i]!;
      out[this.names[i]!] = vs[rest % vs.length]!;
      rest = Math.floor(rest / vs.length);
    }
    return out;
  }

  inferRelativeSearchSpace(): SearchSpace {
    return {};
  }

  sampleRelative(): Record<string, ParamValue> {
    return {};
  }

  beforeTrial(study: Study, trial: FrozenTrial): void {
    // Enqueued trials carry their own params; a retried trial keeps the point it already had.
    if (GRID_ID_ATTR in trial.systemAttrs || 'fixedParams' in trial.systemAttrs) return;
    const taken = this.takenPoints(study, trial.trialId);
    let gridId: number;
    const rng = Rng.from(this.seed, trial.trialId, 'grid');
    const busy = new Set([...taken.finished, ...taken.running]);
    if (busy.size < this.gridSize) {
      gridId = pickFree(rng, this.gridSize, busy);
    } else {
      logger.warn(
        'GridSampler is re-evaluating a grid point because every point has been taken. This happens when peers race for the ' +
          'last points or when a finished grid study is run again.',
      );
      // Points still in flight somewhere are preferred: they may never finish (a crashed peer).
      gridId = taken.finished.size < this.gridSize ? pickFree(rng, this.gridSize, taken.finished) : rng.int(0, this.gridSize - 1);
    }
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, GRID_SPACE_ATTR, this.fingerprint);
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, GRID_ID_ATTR, gridId);
  }

  sampleIndependent(_study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    const gridId = trial.systemAttrs[GRID_ID_ATTR];
    if (typeof gridId !== 'number') {
      throw new DistributionError(
        `GridSampler: trial ${trial.number} has no grid point, so parameter "${paramName}" cannot be sampled; an enqueued trial must give every parameter when the sampler is a GridSampler`,
      );
    }
    const index = this.names.indexOf(paramName);
    if (index < 0) {
      throw new DistributionError(
        `GridSampler: parameter "${paramName}" is not in the grid; the grid has ${this.names.map((n) => `"${n}"`).join(', ') || 'no parameters'}`,
      );
    }
    const value = this.point(gridId)[paramName]!;
    if (!contains(distribution, value)) {
      throw new DistributionError(
        `GridSampler: grid value ${JSON.stringify(value)} of parameter "${paramName}" is outside the suggested ${describeDistribution(distribution)}; make the grid values legal values of the suggest call`,
      );
    }
    return value;
  }

  afterTrial(study: Study, trial: FrozenTrial, _state: TrialState, _values: readonly number[] | null): void {
    // The finishing trial is still RUNNING here, so "every point finished" means: all others finished
    // and, at most, this trial's own point is left.
    const { finished } = this.takenPoints(study, trial.trialId);
    const own = trial.systemAttrs[GRID_ID_ATTR];
    const left = this.gridSize - finished.size;
    if (left === 0 || (left === 1 && typeof own === 'number' && !finished.has(own))) study.stop();
  }

  /** Grid ids of this grid's trials, finished and in flight; `exclude` is the trial asking. */
  private takenPoints(study: Study, exclude: string): { finished: Set<number>; running: Set<number> } {
    const finished = new Set<number>();
    const running = new Set<number>();
    for (const t of study.getTrials()) {
      if (t.trialId === exclude || t.systemAttrs[GRID_SPACE_ATTR] !== this.fingerprint) continue;
      const id = t.systemAttrs[GRID_ID_ATTR];
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= this.gridSize) continue;
      if (t.state === 'RUNNING') running.add(id);
      else if (t.state !== 'WAITING') finished.add(id);
    }
    return { finished, running };
  }
}

/** A uniformly random id in [0, size) that is not in `taken` (which must leave at least one free). */
function pickFree(rng: Rng, size: number, taken: ReadonlySet<number>): number {
  // Mostly-free grids: a few rejection draws beat listing every free point of a large grid.
  if (taken.size <= size / 2) {
    for (;;) {
      const id = rng.int(0, size - 1);
      if (!taken.has(id)) return id;
    }
  }
  const free: number[] = [];
  for (let i = 0; i < size; i++) if (!taken.has(i)) free.push(i);
  return free[rng.int(0, free.length - 1)]!;
}
