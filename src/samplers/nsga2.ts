/**
 * NSGA-II (Deb et al. 2002) for multi-objective studies, in its asynchronous, generation-tagged form:
 * each trial is stamped with a generation when it starts; once a generation holds `populationSize`
 * trials the next one begins. A generation's parents are the elite of the previous parents plus the
 * previous generation's COMPLETE trials, chosen by non-dominated rank and then crowding distance.
 * Children take a uniform crossover of two tournament-selected parents; a mutated parameter (and any
 * parameter outside the intersection space) is sampled uniformly at random. Every peer derives the same
 * parent population from the same history, so peers breed from one population without coordination.
 * With `constraintsFunc`, Deb's constrained domination: feasible trials outrank infeasible ones, and
 * infeasible ones rank among themselves by total violation.
 */
import { toInternal, toExternal, type Distribution, type ParamValue } from '../distributions.js';
import { nonDominatedRanks, toMinimize } from '../multi-objective.js';
import { Rng, randomSeed } from '../rng.js';
import type { FrozenTrial, TrialState } from '../storage/storage.js';
import type { Study } from '../study.js';
import type { Sampler, SearchSpace } from './base.js';
import { checkConstraintsFunc, recordConstraints, violation, type ConstraintsFunc } from './constraints.js';
import { sampleUniform } from './random.js';
import { IntersectionSearchSpace } from './search-space.js';

const GEN_KEY = 'nsga2:generation';

export interface NSGAIISamplerOptions {
  populationSize?: number;
  /** Probability that a parameter is mutated (resampled at random). Default 1 / number of params. */
  mutationProb?: number | null;
  crossoverProb?: number;
  swappingProb?: number;
  seed?: number;
  /** Constraint values of a finished trial; feasible when all are <= 0 (see constraints.ts). */
  constraintsFunc?: ConstraintsFunc;
}

export class NSGAIISampler implements Sampler {
  readonly populationSize: number;
  readonly mutationProb: number | null;
  readonly crossoverProb: number;
  readonly swappingProb: number;
  readonly seed: number;
  private readonly constraintsFunc: ConstraintsFunc | null;
  private parentCache = new Map<number, { version: number; parents: FrozenTrial[] }>();
  private readonly space = new IntersectionSearchSpace(false);

  constructor(opts: NSGAIISamplerOptions = {}) {
    this.populationSize = opts.populationSize ?? 50;
    this.mutationProb = opts.mutationProb ?? null;
    this.crossoverProb = opts.crossoverProb ?? 0.9;
    this.swappingProb = opts.swappingProb ?? 0.5;
    this.seed = opts.seed ?? randomSeed();
    this.constraintsFunc = checkConstraintsFunc('NSGAIISampler', opts.constraintsFunc);
    if (!Number.isInteger(this.populationSize) || this.populationSize < 2) {
      throw new Error(`NSGAIISampler: populationSize must be an integer >= 2, got ${opts.populationSize}`);
    }
    for (const [k, v] of [['mutationProb', this.mutationProb], ['crossoverProb', this.crossoverProb], ['swappingProb', this.swappingProb]] as const) {
      if (v !== null && !(v >= 0 && v <= 1)) throw new Error(`NSGAIISampler: ${k} must be in [0, 1], got ${v}`);
    }
  }

  beforeTrial(study: Study, trial: FrozenTrial): void {
    if (trial.systemAttrs[GEN_KEY] !== undefined) return;
    const counts = new Map<number, number>();
    let maxGen = 0;
    for (const t of study.getTrials()) {
      const g = t.systemAttrs[GEN_KEY];
      if (typeof g !== 'number' || t.trialId === trial.trialId) continue;
      counts.set(g, (counts.get(g) ?? 0) + 1);
      maxGen = Math.max(maxGen, g);
    }
    const gen = (counts.get(maxGen) ?? 0) >= this.populationSize ? maxGen + 1 : maxGen;
    study.storage.setTrialSystemAttr(study.studyId, trial.trialId, GEN_KEY, gen);
  }

  inferRelativeSearchSpace(study: Study): SearchSpace {
    return this.space.calculate(study.getTrials({ states: ['COMPLETE'] }));
  }

  sampleRelative(study: Study, trial: FrozenTrial, space: SearchSpace): Record<string, ParamValue> {
    const gen = study.storage.getTrial(study.studyId, trial.trialId).systemAttrs[GEN_KEY] as number | undefined;
    if (!gen) return {};
    const parents = this.parentPopulation(study, gen);
    if (parents.length < 2) return {};
    const rng = Rng.from(this.seed, trial.trialId, 'nsga2');
    const ranked = this.rankAndCrowd(parents, study);
    const pick = (): FrozenTrial => {
      const a = rng.int(0, parents.length - 1);
      const b = rng.int(0, parents.length - 1);
      const ra = ranked[a]!;
      const rb = ranked[b]!;
      const better = ra.rank < rb.rank || (ra.rank === rb.rank && ra.crowding > rb.crowding) ? a : b;
      return parents[better]!;
    };
    const p1 = pick();
    let p2 = pick();
    for (let i = 0; i < 4 && p2 === p1; i++) p2 = pick();
    const names = Object.keys(space).filter((n) => n in p1.params && n in p2.params);
    const doCross = rng.random() < this.crossoverProb;
    const mutation = this.mutationProb ?? 1 / Math.max(1, names.length);
    const child: Record<string, ParamValue> = {};
    for (const name of names) {
      const d: Distribution = space[name]!;
      const from = doCross && rng.random() < this.swappingProb ? p2 : p1;
      if (rng.random() < mutation) continue; // left to sampleIndependent: a random draw
      child[name] = toExternal(d, toInternal(d, from.params[name]!));
    }
    return child;
  }

  sampleIndependent(_study: Study, trial: FrozenTrial, paramName: string, distribution: Distribution): ParamValue {
    return sampleUniform(Rng.from(this.seed, trial.trialId, paramName), distribution);
  }

  afterTrial(study: Study, trial: FrozenTrial, state: TrialState, values: readonly number[] | null): void {
    if (this.constraintsFunc) recordConstraints(this.constraintsFunc, study, trial, state, values);
  }

  /** Parents of generation `gen`: elite of (parents of gen-1 ∪ COMPLETE trials of gen-1). */
  private parentPopulation(study: Study, gen: number): FrozenTrial[] {
    if (gen <= 0) return [];
    const version = study.storage.getVersion(study.studyId);
    const cached = this.parentCache.get(gen);
    if (cached && cached.version === version) return cached.parents;
    const byGen = new Map<number, FrozenTrial[]>();
    for (const t of study.getTrials({ states: ['COMPLETE'] })) {
      const g = t.systemAttrs[GEN_KEY];
      if (typeof g !== 'number') continue;
      if (!byGen.has(g)) byGen.set(g, []);
      byGen.get(g)!.push(t);
    }
    let parents: FrozenTrial[] = [];
    for (let g = 0; g < gen; g++) {
      const pool = [...parents, ...(byGen.get(g) ?? [])];
      parents = this.selectElite(pool, study);
    }
    this.parentCache.set(gen, { version, parents });
    return parents;
  }

  private selectElite(pool: FrozenTrial[], study: Study): FrozenTrial[] {
    if (pool.length <= this.populationSize) return pool;
    const ranked = this.rankAndCrowd(pool, study);
    const order = pool.map((_, i) => i).sort((a, b) => ranked[a]!.rank - ranked[b]!.rank || ranked[b]!.crowding - ranked[a]!.crowding || a - b);
    return order.slice(0, this.populationSize).map((i) => pool[i]!);
  }

  private rankAndCrowd(pool: FrozenTrial[], study: Study): { rank: number; crowding: number }[] {
    const pts = pool.map((t) => toMinimize(t.values!, study.directions));
    const ranks = this.constraintsFunc ? constrainedRanks(pool, pts) : nonDominatedRanks(pts);
    const crowding = new Array<number>(pool.length).fill(0);
    const fronts = new Map<number, number[]>();
    ranks.forEach((r, i) => {
      if (!fronts.has(r)) fronts.set(r, []);
      fronts.get(r)!.push(i);
    });
    const m = pts[0]?.length ?? 0;
    for (const idx of fronts.values()) {
      for (let k = 0; k < m; k++) {
        const sorted = [...idx].sort((a, b) => pts[a]![k]! - pts[b]![k]!);
        const lo = pts[sorted[0]!]![k]!;
        const hi = pts[sorted[sorted.length - 1]!]![k]!;
        crowding[sorted[0]!] = Infinity;
        crowding[sorted[sorted.length - 1]!] = Infinity;
        if (hi === lo) continue;
        for (let j = 1; j < sorted.length - 1; j++) {
          crowding[sorted[j]!]! += (pts[sorted[j + 1]!]![k]! - pts[sorted[j - 1]!]![k]!) / (hi - lo);
        }
      }
    }
    return ranks.map((rank, i) => ({ rank, crowding: crowding[i]! }));
  }
}

/** Non-dominated ranks of the feasible trials, then one rank per distinct violation for the others. */
function constrainedRanks(pool: readonly FrozenTrial[], pts: readonly number[][]): number[] {
  const viol = pool.map(violation);
  const feasible = pool.map((_, i) => i).filter((i) => viol[i] === 0);
  const ranks = new Array<number>(pool.length).fill(0);
  const nd = nonDominatedRanks(feasible.map((i) => pts[i]!));
  let next = 0;
  feasible.forEach((i, j) => {
    ranks[i] = nd[j]!;
    next = Math.max(next, nd[j]! + 1);
  });
  const levels = [...new Set(viol.filter((v) => v > 0))].sort((a, b) => a - b);
  pool.forEach((_, i) => {
    if (viol[i]! > 0) ranks[i] = next + levels.indexOf(viol[i]!);
  });
  return ranks;
}
