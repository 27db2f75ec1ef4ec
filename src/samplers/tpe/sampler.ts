/**
 * TPESampler: the policy half of TPE (the math lives in parzen-estimator.ts). It decides which trials
 * are observations, ranks them (pruned trials by how far they got, then by their last intermediate
 * value), splits them into the good ("below") and the bad ("above") group, fits one Parzen estimator
 * to each, draws candidates from the good one and keeps the candidate with the best density ratio.
 * `multivariate` (the default) samples the intersection search space jointly at `ask()`; parameters
 * outside it get one estimator each (univariate TPE, Optuna 3.x's default mode). `group` splits
 * conditional spaces into blocks that are sampled jointly. With `constantLiar` (the default), trials in
 * flight anywhere in the swarm join the bad group, so concurrent workers and peers spread out instead
 * of proposing the same point.
 */
import { contains, type Distribution, type ParamValue } from '../../distributions.js';
import { greedyHypervolumeOrder, hypervolumeContributions, optunaReferencePoint } from '../../hypervolume.js';
import { nonDominatedRanks, toMinimize } from '../../multi-objective.js';
import { Rng, randomSeed } from '../../rng.js';
import { isFinished, type FrozenTrial, type StudyDirection, type TrialState } from '../../storage/storage.js';
import type { Study } from '../../study.js';
import type { Sampler, SearchSpace } from '../base.js';
import { checkConstraintsFunc, recordConstraints, violation, type ConstraintsFunc } from '../constraints.js';
import { sampleUniform } from '../random.js';
import { GroupDecomposedSearchSpace, IntersectionSearchSpace } from '../search-space.js';
import { ParzenEstimator, fromModel, paramModel, sortPairs, toModel, type BandwidthRule, type ParamModel, type ParzenOptions } from './parzen-estimator.js';
import { PeertuneError } from '../../errors.js';

export interface TPESamplerOptions {
  /** Trials sampled at random before TPE starts (counted over finished trials). Default 10. */
  nStartupTrials?: number;
  /** Candidates drawn from the good group per sample. Default 24. */
  nEiCandidates?: number;
  /** Size of the good group given the number of finished observations. Default min(ceil(0.1 n), 25). */
  gamma?: (n: number) => number;
  /** Weights of n observations, oldest first. Default: Optuna's ramp (flat for the newest 25). */
  weights?: (n: number) => ArrayLike<number>;
  /** Weight of the prior kernel; 0 turns the prior off. Default 1. */
  priorWeight?: number;
  considerPrior?: boolean;
  considerMagicClip?: boolean;
  considerEndpoints?: boolean;
  /** Sample the parameters every finished trial has jointly, at ask(). Default true (Optuna 5's default; 3.x: false). */
  multivariate?: boolean;
  /** With multivariate: decompose a conditional space into blocks sampled jointly (a block a trial may
   * not reach is sampled when its first parameter is suggested). Default false. */
  group?: boolean;
  /** Count trials in flight (RUNNING, here or on other peers) as bad observations. Default true (3.x: false). */
  constantLiar?: boolean;
  seed?: number;
  /** Bandwidth rule of joint kernels; see ParzenOptions.bandwidth. Default 'scott' (3.x: 'optuna'). */
  bandwidth?: BandwidthRule;
  /** Smallest bandwidth as a fraction of the range (Watanabe 2023's b_min). Default 0. */
  minBandwidthFactor?: number;
  /** See ParzenOptions.kernelWeighting. Default 'exact' (Optuna 3.1 effectively used 'bandwidth'). */
  kernelWeighting?: 'exact' | 'bandwidth';
  /**
   * Several objectives: how the good group is chosen. 'rank': whole non-dominated fronts, the last
   * one cut by age, with the usual weights. 'hypervolume' (Optuna's MOTPE): the last front cut by
   * greedy hypervolume subset selection, good observations weighted by their hypervolume contribution.
   * Default 'hypervolume': over ZDT1, ZDT2, ZDT3 and DTLZ2 at 50, 100 and 200 trials (10 seeds) its
   * median hypervolume was higher in 10 of the 12 cells (bench/multi-objective.bench.ts).
   */
  multiObjectiveSplit?: 'rank' | 'hypervolume';
  /** Constraint values of a finished trial, feasible when all are <= 0; infeasible trials rank last. */
  constraintsFunc?: ConstraintsFunc;
}

/**
 * Optuna 3.1's TPE, for `new TPESampler({ ...OPTUNA3_TPE_OPTIONS, seed })`: its Parzen log-densities
 * are reproduced to 1e-6 (test/samplers/tpe.test.ts). peertune's defaults differ in four places (multivariate,
 * constant liar, Scott bandwidth for joint kernels, exact kernel densities) because together they found
 * better points on 4 of the 5 benchmark functions at 100 trials (median over 40 seeds).
 */
export const OPTUNA3_TPE_OPTIONS: Readonly<TPESamplerOptions> = Object.freeze({
  multivariate: false,
  constantLiar: false,
  bandwidth: 'optuna',
  nStartupTrials: 10,
  nEiCandidates: 24,
  priorWeight: 1,
  considerMagicClip: true,
  considerEndpoints: false,
  kernelWeighting: 'bandwidth',
});

export class TPEOptionError extends PeertuneError {
  override name = 'TPEOptionError';
}

/** Optuna's split: the best 10% are "good", capped at 25. */
export function defaultGamma(n: number): number {
  return Math.min(Math.ceil(0.1 * n), 25);
}

/** Optuna's weights: the newest 25 observations weigh 1, older ones ramp down linearly towards 1/n. */
export function defaultWeights(n: number): Float64Array {
  const w = new Float64Array(n);
  if (n < 25) return w.fill(1);
  const ramp = n - 25;
  for (let i = 0; i < ramp; i++) w[i] = ramp === 1 ? 1 / n : 1 / n + ((1 - 1 / n) * i) / (ramp - 1);
  w.fill(1, ramp);
  return w;
}

function checkInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
    throw new TPEOptionError(`TPESampler: ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

function checkNumber(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min) {
    throw new TPEOptionError(`TPESampler: ${name} must be a finite number >= ${min}, got ${String(v)}`);
  }
  return v;
}

const FINISHED_OK: readonly TrialState[] = ['COMPLETE', 'PRUNED'];

/** The ranked view of a study's finished trials; rebuilt only when the set of finished trials grows. */
interface History {
  readonly finishedCount: number;
  /** COMPLETE and PRUNED trials, oldest first. */
  readonly trials: readonly FrozenTrial[];
  /** rank[i]: position of trials[i] when sorted best first (0 = best). */
  readonly rank: Int32Array;
  /** RUNNING trials at the last look (refreshed on every call: their params arrive as they are suggested). */
  running: readonly FrozenTrial[];
  /** Several objectives: each trial's values in minimize form (null when not a feasible COMPLETE trial). */
  readonly losses: (number[] | null)[] | null;
}

/** One estimator's worth of observations. */
interface Split {
  readonly below: Float64Array[];
  readonly belowWeights: ArrayLike<number>;
  readonly above: Float64Array[];
  readonly aboveWeights: ArrayLike<number>;
}

interface StudyState {
  history: History | null;
  readonly intersection: IntersectionSearchSpace;
  readonly groups: GroupDecomposedSearchSpace;
  /** Groups sampled jointly at ask() time vs. lazily when their first parameter is suggested. */
  lastGroups: SearchSpace[];
}

export class TPESampler implements Sampler {
  readonly seed: number;
  private readonly nStartupTrials: number;
  private readonly nEiCandidates: number;
  private readonly gamma: (n: number) => number;
  private readonly weights: (n: number) => ArrayLike<number>;
  private readonly multivariate: boolean;
  private readonly group: boolean;
  private readonly constantLiar: boolean;
  private readonly parzen: ParzenOptions;
  private readonly moSplit: 'rank' | 'hypervolume';
  private readonly constraintsFunc: ConstraintsFunc | null;
  private readonly studies = new Map<string, StudyState>();
  /** Conditional groups sampled jointly on first use, per trial (cleared when the trial finishes). */
  private readonly lazyGroups = new Map<string, Map<string, Record<string, ParamValue>>>();

  constructor(opts: TPESamplerOptions = {}) {
    if (opts === null || typeof opts !== 'object') throw new TPEOptionError('TPESampler: options must be an object');
    const known = new Set([
      'nStartupTrials', 'nEiCandidates', 'gamma', 'weights', 'priorWeight', 'considerPrior', 'considerMagicClip',
      'considerEndpoints', 'multivariate', 'group', 'constantLiar', 'seed', 'bandwidth', 'minBandwidthFactor', 'kernelWeighting',
      'multiObjectiveSplit', 'constraintsFunc',
    ]);
    for (const k of Object.keys(opts)) {
      if (!known.has(k)) throw new TPEOptionError(`TPESampler: unknown option "${k}"; valid options are ${[...known].join(', ')}`);
    }
    this.nStartupTrials = checkInt('nStartupTrials', opts.nStartupTrials ?? 10, 0);
    this.nEiCandidates = checkInt('nEiCandidates', opts.nEiCandidates ?? 24, 1);
    for (const f of ['gamma', 'weights'] as const) {
      if (opts[f] !== undefined && typeof opts[f] !== 'function') throw new TPEOptionError(`TPESampler: ${f} must be a function of n, got ${typeof opts[f]}`);
    }
    this.gamma = opts.gamma ?? defaultGamma;
    this.weights = opts.weights ?? defaultWeights;
    const priorWeight = checkNumber('priorWeight', opts.priorWeight ?? 1, 0);
    if (opts.considerPrior === true && priorWeight === 0) throw new TPEOptionError('TPESampler: considerPrior needs priorWeight > 0');
    const bandwidth = opts.bandwidth ?? 'scott';
    if (bandwidth !== 'optuna' && bandwidth !== 'scott') throw new TPEOptionError(`TPESampler: bandwidth must be "optuna" or "scott", got ${JSON.stringify(bandwidth)}`);
    const minBandwidthFactor = checkNumber('minBandwidthFactor', opts.minBandwidthFactor ?? 0, 0);
    if (minBandwidthFactor > 1) throw new TPEOptionError(`TPESampler: minBandwidthFactor must be in [0, 1], got ${minBandwidthFactor}`);
    const kernelWeighting = opts.kernelWeighting ?? 'exact';
    if (kernelWeighting !== 'exact' && kernelWeighting !== 'bandwidth') {
      throw new TPEOptionError(`TPESampler: kernelWeighting must be "exact" or "bandwidth", got ${JSON.stringify(kernelWeighting)}`);
    }
    this.parzen = {
      kernelWeighting,
      priorWeight: opts.considerPrior === false ? 0 : priorWeight,
      considerMagicClip: opts.considerMagicClip ?? true,
      considerEndpoints: opts.considerEndpoints ?? false,
      bandwidth,
      minBandwidthFactor,
    };
    this.multivariate = opts.multivariate ?? true;
    this.group = opts.group ?? false;
    if (this.group && !this.multivariate) throw new TPEOptionError('TPESampler: group=true needs multivariate=true (groups are sampled jointly)');
    this.constantLiar = opts.constantLiar ?? true;
    if (opts.seed !== undefined && (typeof opts.seed !== 'number' || !Number.isFinite(opts.seed))) {
      throw new TPEOptionError(`TPESampler: seed must be a finite number, got ${String(opts.seed)}`);
    }
    this.seed = opts.seed ?? randomSeed();
    const moSplit = opts.multiObjectiveSplit ?? 'hypervolume';
    if (moSplit !== 'rank' && moSplit !== 'hypervolume') {
      throw new TPEOptionError(`TPESampler: multiObjectiveSplit must be "rank" or "hypervolume", got ${JSON.stringify(moSplit)}`);
    }
    this.moSplit = moSplit;
    try {
      this.constraintsFunc = checkConstraintsFunc('TPESampler', opts.constraintsFunc);
    } catch (e) {
      throw new TPEOptionError((e as Error).message);
    }
  }

  // ---- Sampler interface ----

  inferRelativeSearchSpace(study: Study, _trial: FrozenTrial): SearchSpace {
    if (!this.multivariate) return {};
    const st = this.state(study);
    const trials = study.getTrials();
    const common = st.intersection.calculate(trials);
    if (!this.group) return common;
    // Only blocks every finished trial used are sampled at ask(): the contract is to return parameters
    // the trial will use, and a conditional block may not be reached. The rest are sampled on first use.
    st.lastGroups = st.groups.calculate(trials);
    const space: SearchSpace = {};
    for (const g of st.lastGroups) {
      if (Object.keys(g).every((name) => name in common)) Object.assign(space, g);
    }
    return space;
  }

  sampleRelative(study: Study, trial: FrozenTrial, searchSpace: SearchSpace): Record<string, ParamValue> {
    if (Object.keys(searchSpace).length === 0) return {};
    const hist = this.history(study);
    if (hist.trials.length < this.nStartupTrials) return {};
    const blocks = this.group ? this.state(study).lastGroups.filter((g) => Object.keys(g).every((n) => n in searchSpace)) : [searchSpace];
    const out: Record<string, ParamValue> = {};
    for (const block of blocks) {
      const names = Object.keys(block).sort();
      Object.assign(out, this.sampleJoint(study, trial, names, names.map((n) => block[n]!), `relative:${names.join(',')}`));
    }
    return out;
  }

  sampleIndependent(study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    if (this.group) {
      const v = this.fromLazyGroup(study, trial, paramName, distribution);
      if (v !== undefined) return v;
    }
    return this.sampleJoint(study, trial, [paramName], [distribution], `independent:${paramName}`)[paramName]!;
  }

  afterTrial(study: Study, trial: FrozenTrial, state: TrialState, values: readonly number[] | null): void {
    this.lazyGroups.delete(trial.trialId);
    if (this.constraintsFunc) recordConstraints(this.constraintsFunc, study, trial, state, values);
  }

  // ---- policy ----

  private state(study: Study): StudyState {
    let st = this.studies.get(study.studyId);
    if (!st) {
      st = { history: null, intersection: new IntersectionSearchSpace(true), groups: new GroupDecomposedSearchSpace(true), lastGroups: [] };
      this.studies.set(study.studyId, st);
    }
    return st;
  }

  /** A conditional block is sampled jointly the first time one of its parameters is suggested. */
  private fromLazyGroup(study: Study, trial: FrozenTrial, name: string, d: Distribution): ParamValue | undefined {
    const st = this.state(study);
    const block = st.lastGroups.find((g) => name in g);
    if (!block || Object.keys(block).length < 2) return undefined;
    const names = Object.keys(block).sort();
    const key = names.join(',');
    let perTrial = this.lazyGroups.get(trial.trialId);
    let values = perTrial?.get(key);
    if (!values) {
      if (this.history(study).trials.length < this.nStartupTrials) return undefined;
      values = this.sampleJoint(study, trial, names, names.map((n) => block[n]!), `group:${key}`);
      if (!perTrial) {
        perTrial = new Map();
        this.lazyGroups.set(trial.trialId, perTrial);
        // Trials abandoned without tell() must not pile up here.
        if (this.lazyGroups.size > 4096) this.lazyGroups.delete(this.lazyGroups.keys().next().value!);
      }
      perTrial.set(key, values);
    }
    const blockDist = block[name]!;
    if (blockDist !== d && JSON.stringify(blockDist) !== JSON.stringify(d)) return undefined;
    return values[name];
  }

  /** Ranks the finished trials once per change of the finished set (finished trials never change). */
  private history(study: Study): History {
    const st = this.state(study);
    const all = study.getTrials();
    let finishedCount = 0;
    const inFlight: FrozenTrial[] = [];
    for (const t of all) {
      if (isFinished(t.state)) finishedCount++;
      else if (t.state === 'RUNNING') inFlight.push(t);
    }
    if (!st.history || st.history.finishedCount !== finishedCount) {
      const trials = all.filter((t) => FINISHED_OK.includes(t.state) && (t.state === 'PRUNED' || t.values !== null));
      st.history = { finishedCount, trials, rank: rankTrials(trials, study.directions, {
          constrained: this.constraintsFunc !== null,
          hypervolumeDepth: this.moSplit === 'hypervolume' ? Math.max(0, Math.floor(this.gamma(trials.length))) : 0,
        }), running: inFlight, losses: study.isMultiObjective ? trials.map((t) => (t.state === 'COMPLETE' && t.values && (!this.constraintsFunc || violation(t) === 0) ? toMinimize(t.values, study.directions) : null)) : null };
    } else {
      st.history.running = inFlight;
    }
    return st.history;
  }


  /** TPE proper for the parameters `names` (one: univariate; several: a joint block). */
  private sampleJoint(study: Study, trial: FrozenTrial, names: readonly string[], dists: readonly Distribution[], purpose: string): Record<string, ParamValue> {
    const hist = this.history(study);
    const models = dists.map(paramModel);
    const obs = observations(hist.trials, names, models);
    if (obs.count < this.nStartupTrials || obs.count === 0) {
      const out: Record<string, ParamValue> = {};
      names.forEach((n, j) => (out[n] = sampleUniform(Rng.from(this.seed, trial.trialId, n), dists[j]!)));
      return out;
    }
    const split = this.split(hist, obs, names, models, this.constantLiar ? liars(hist.running, trial, names, models) : null);
    const below = ParzenEstimator.fit(models, split.below, split.belowWeights, this.parzen);
    const above = ParzenEstimator.fit(models, split.above, split.aboveWeights, this.parzen);
    const rng = Rng.from(this.seed, trial.trialId, 'tpe', purpose);
    const cands = below.sample(rng, this.nEiCandidates);
    const lb = below.logPdf(cands, this.nEiCandidates);
    const la = above.logPdf(cands, this.nEiCandidates);
    let best = 0;
    let bestScore = -Infinity;
    for (let c = 0; c < this.nEiCandidates; c++) {
      const s = lb[c]! - la[c]!;
      if (s > bestScore) {
        bestScore = s;
        best = c;
      }
    }
    const out: Record<string, ParamValue> = {};
    names.forEach((n, j) => (out[n] = fromModel(models[j]!, cands[j]![best]!)));
    return out;
  }

  /** The good group: the gamma(n) best observations; the bad group: the rest, plus in-flight trials as liars. */
  private split(hist: History, obs: Observations, names: readonly string[], models: readonly ParamModel[], liars: Float64Array[] | null): Split {
    const n = obs.count;
    const nBelow = Math.max(0, Math.min(n, Math.floor(this.gamma(n))));
    if (!Number.isFinite(nBelow)) throw new TPEOptionError(`TPESampler: gamma(${n}) returned ${this.gamma(n)}; it must return a number`);
    // The nBelow-th best rank among these observations is the threshold. Ranks are distinct integers
    // below hist.trials.length, so marking them and scanning finds it in O(n) with no sort per parameter.
    const ranks = new Int32Array(n);
    const marked = new Uint8Array(hist.trials.length);
    for (let i = 0; i < n; i++) marked[(ranks[i] = hist.rank[obs.index[i]!]!)] = 1;
    let cutoff = -1;
    for (let r = 0, seen = 0; seen < nBelow; r++) if (marked[r]) (cutoff = r), seen++;
    const nLiars = liars ? liars[0]!.length : 0;
    const d = names.length;
    const below = models.map(() => new Float64Array(nBelow));
    const above = models.map(() => new Float64Array(n - nBelow + nLiars));
    let b = 0, a = 0;
    const belowTrials: number[] = [];
    for (let i = 0; i < n; i++) {
      const good = ranks[i]! <= cutoff;
      for (let j = 0; j < d; j++) (good ? below : above)[j]![good ? b : a] = obs.values[j]![i]!;
      if (good) (b++, belowTrials.push(obs.index[i]!));
      else a++;
    }
    for (let i = 0; i < nLiars; i++, a++) for (let j = 0; j < d; j++) above[j]![a] = liars![j]![i]!;
    let belowWeights = this.weightsFor(nBelow);
    if (this.moSplit === 'hypervolume' && hist.losses) {
      // Infeasible or pruned members of the good group get a negligible weight, as in Optuna 3.1.
      const withLoss = belowTrials.map((t, k) => ({ k, loss: hist.losses![t] })).filter((e) => e.loss);
      const w = new Float64Array(nBelow).fill(1e-12);
      const hv = hypervolumeWeights(withLoss.map((e) => e.loss!));
      withLoss.forEach((e, m) => (w[e.k] = hv[m]!));
      belowWeights = w;
    }
    return { below, belowWeights, above, aboveWeights: this.weightsFor(a) };
  }

  private weightsFor(n: number): ArrayLike<number> {
    if (n === 0) return new Float64Array(0);
    const w = this.weights(n);
    if (!w || w.length !== n) throw new TPEOptionError(`TPESampler: weights(${n}) must return ${n} numbers, got ${w?.length}`);
    for (let i = 0; i < n; i++) {
      if (!(w[i]! >= 0) || !Number.isFinite(w[i]!)) throw new TPEOptionError(`TPESampler: weights(${n}) returned ${w[i]} at ${i}; weights must be finite and >= 0`);
    }
    return w;
  }
}

/**
 * Orders finished trials best first. Single objective: COMPLETE by value; PRUNED after them, ranked by
 * the last step they reached (further is better) and then their value there; PRUNED without any
 * report last. Several objectives: non-dominated rank, then age; with `hypervolumeDepth` > 0, the
 * members of each front that starts within the first `hypervolumeDepth` places are ordered by greedy
 * hypervolume subset selection instead (Optuna's reference point, per front).
 * `constrained`: infeasible trials (and trials without constraint values) come after every feasible
 * one, by total violation, as Optuna ranks them.
 */
function rankTrials(trials: readonly FrozenTrial[], directions: readonly StudyDirection[], opts: { constrained: boolean; hypervolumeDepth: number }): Int32Array {
  const base = rankUnconstrained(trials, directions, opts);
  if (!opts.constrained) return base;
  const n = trials.length;
  const viol = trials.map(violation);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    const va = viol[a]!, vb = viol[b]!;
    if ((va > 0) !== (vb > 0)) return va > 0 ? 1 : -1;
    if (va > 0 && va !== vb) return va < vb ? -1 : 1;
    return base[a]! - base[b]!;
  });
  const rank = new Int32Array(n);
  order.forEach((i, r) => (rank[i] = r));
  return rank;
}

function rankUnconstrained(trials: readonly FrozenTrial[], directions: readonly StudyDirection[], opts: { constrained: boolean; hypervolumeDepth: number }): Int32Array {
  const n = trials.length;
  const tieKey = Float64Array.from({ length: n }, (_, i) => i);
  const stepKey = new Float64Array(n);
  const valueKey = new Float64Array(n);
  if (directions.length === 1) {
    const sign = directions[0] === 'maximize' ? -1 : 1;
    for (let i = 0; i < n; i++) {
      const t = trials[i]!;
      if (t.state === 'COMPLETE') {
        stepKey[i] = -Infinity;
        valueKey[i] = sign * t.values![0]!;
      } else if (t.intermediateValues.size > 0) {
        let last = -Infinity;
        for (const s of t.intermediateValues.keys()) if (s > last) last = s;
        const v = t.intermediateValues.get(last)!;
        stepKey[i] = -last;
        valueKey[i] = Number.isNaN(v) ? Infinity : sign * v;
      } else {
        stepKey[i] = Infinity;
        valueKey[i] = 0;
      }
    }
  } else {
    const done: number[] = [];
    for (let i = 0; i < n; i++) {
      // Infeasible trials stay out of the fronts: they must not push feasible ones down a rank.
      if (trials[i]!.state === 'COMPLETE' && !(opts.constrained && violation(trials[i]!) > 0)) done.push(i);
      else stepKey[i] = Infinity;
    }
    const pts = done.map((i) => toMinimize(trials[i]!.values!, directions));
    const nd = nonDominatedRanks(pts);
    done.forEach((i, r) => {
      stepKey[i] = -Infinity;
      valueKey[i] = nd[r]!;
    });
    if (opts.hypervolumeDepth > 0) orderFrontsByHypervolume(done, pts, nd, opts.hypervolumeDepth, tieKey);
  }
  const rank = new Int32Array(n);
  if (directions.length === 1) {
    // Usually nearly all are COMPLETE: sort those by value with the fast pair sort, the few PRUNED apart.
    const done: number[] = [];
    const rest: number[] = [];
    for (let i = 0; i < n; i++) (stepKey[i] === -Infinity ? done : rest).push(i);
    const keys = new Float64Array(done.length);
    const idx = new Float64Array(done.length);
    done.forEach((i, r) => ((keys[r] = valueKey[i]!), (idx[r] = i)));
    sortPairs(keys, idx, 0, done.length - 1);
    // Equal values: the older trial first (as a stable sort would have it).
    for (let a = 0, b = 1; a < done.length; a = b, b = a + 1) {
      while (b < done.length && keys[b] === keys[a]) b++;
      if (b - a > 1) idx.subarray(a, b).sort();
    }
    rest.sort((a, b) => (stepKey[a] !== stepKey[b] ? (stepKey[a]! < stepKey[b]! ? -1 : 1) : valueKey[a] !== valueKey[b] ? (valueKey[a]! < valueKey[b]! ? -1 : 1) : a - b));
    idx.forEach((i, r) => (rank[i] = r));
    rest.forEach((i, r) => (rank[i] = done.length + r));
    return rank;
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => {
    if (stepKey[a] !== stepKey[b]) return stepKey[a]! < stepKey[b]! ? -1 : 1;
    if (valueKey[a] !== valueKey[b]) return valueKey[a]! < valueKey[b]! ? -1 : 1;
    if (tieKey[a] !== tieKey[b]) return tieKey[a]! - tieKey[b]!;
    return a - b;
  });
  order.forEach((i, r) => (rank[i] = r));
  return rank;
}

/**
 * Within each front that starts before `depth` places are filled, the greedy hypervolume order of its
 * members (up to `depth` picks; the rest after them by age) goes into tieKey.
 */
function orderFrontsByHypervolume(done: readonly number[], pts: readonly number[][], nd: readonly number[], depth: number, tieKey: Float64Array): void {
  const fronts = new Map<number, number[]>();
  nd.forEach((r, j) => {
    if (!fronts.has(r)) fronts.set(r, []);
    fronts.get(r)!.push(j);
  });
  let placed = 0;
  for (let r = 0; placed < depth && fronts.has(r); r++) {
    const members = fronts.get(r)!;
    placed += members.length;
    if (members.length < 2) continue;
    const vals = members.map((j) => pts[j]!);
    const order = greedyHypervolumeOrder(vals, optunaReferencePoint(vals), Math.min(depth, members.length));
    const picked = new Set(order);
    order.forEach((m, pos) => (tieKey[done[members[m]!]!] = pos - members.length - 1e9));
    members.forEach((j, m) => {
      if (!picked.has(m)) tieKey[done[j]!] = done[j]!;
    });
  }
}

/**
 * Optuna 3.1's below weights for several objectives: each good observation's hypervolume contribution
 * within the good group (reference point from the group), divided by the largest.
 */
function hypervolumeWeights(points: readonly number[][]): Float64Array {
  const n = points.length;
  if (n <= 1) return new Float64Array(n).fill(1);
  const contrib = hypervolumeContributions(points, optunaReferencePoint(points)).map((c) => c + 1e-12);
  const max = Math.max(...contrib);
  return Float64Array.from(contrib, (c) => Math.min(1, Math.max(0, c / max)));
}

interface Observations {
  readonly count: number;
  /** Index into History.trials of each observation (oldest first). */
  readonly index: Int32Array;
  /** values[j][i]: model-space value of names[j] in observation i. */
  readonly values: Float64Array[];
}

/** Model-space value of a trial's parameter, or NaN if the trial lacks it or it does not fit the distribution. */
function valueOf(t: FrozenTrial, name: string, m: ParamModel): number {
  const d = t.distributions[name];
  if (d === undefined) return NaN;
  const v = t.params[name]!;
  if (d !== m.distribution && d.type !== m.distribution.type) return NaN;
  if (m.kind === 'categorical') {
    const idx = choiceIndex(m.distribution, v);
    return idx;
  }
  if (typeof v !== 'number') return NaN;
  if (d !== m.distribution && !sameNumeric(d, m.distribution) && !contains(m.distribution, v)) return NaN;
  return toModel(m, v);
}

/** Field-by-field equality of two numeric distributions (the common case; skips the range check). */
function sameNumeric(a: Distribution, b: Distribution): boolean {
  return a.type !== 'categorical' && b.type === a.type && a.low === b.low && a.high === b.high && a.log === b.log && a.step === b.step;
}

const choiceIndexCache = new WeakMap<Distribution, Map<string, number>>();

function choiceIndex(d: Distribution, v: ParamValue): number {
  if (d.type !== 'categorical') return NaN;
  let map = choiceIndexCache.get(d);
  if (!map) {
    map = new Map(d.choices.map((c, i) => [keyOf(c), i]));
    choiceIndexCache.set(d, map);
  }
  return map.get(keyOf(v)) ?? NaN;
}

function keyOf(c: ParamValue): string {
  return `${c === null ? 'null' : typeof c}:${String(c)}`;
}

function observations(trials: readonly FrozenTrial[], names: readonly string[], models: readonly ParamModel[]): Observations {
  const d = names.length;
  const cap = trials.length;
  const idx = new Int32Array(cap);
  const cols = names.map(() => new Float64Array(cap));
  let n = 0;
  for (let i = 0; i < cap; i++) {
    const t = trials[i]!;
    let ok = true;
    for (let j = 0; j < d && ok; j++) {
      const v = valueOf(t, names[j]!, models[j]!);
      if (Number.isNaN(v)) ok = false;
      else cols[j]![n] = v;
    }
    if (ok) idx[n++] = i;
  }
  return { count: n, index: idx.subarray(0, n), values: cols.map((c) => c.subarray(0, n)) };
}

/** In-flight trials (other than the one asking) that already hold these parameters: the constant liars. */
function liars(runningTrials: readonly FrozenTrial[], self: FrozenTrial, names: readonly string[], models: readonly ParamModel[]): Float64Array[] {
  return observations(runningTrials.filter((t) => t.trialId !== self.trialId), names, models).values;
}
