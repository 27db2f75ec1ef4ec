/**
 * Which parameters a relative sampler can sample together, learned from finished trials.
 * `IntersectionSearchSpace`: the parameters every finished trial has, with one distribution (what
 * multivariate TPE samples at `ask()`). `GroupDecomposedSearchSpace`: the finest partition of all
 * parameters seen such that each finished trial's parameter set is a union of groups, so a conditional
 * space splits into blocks that always appear together (Optuna's `group=True`).
 * Both only ever look at each finished trial once: a finished trial never changes, so the answer
 * is folded forward as the history grows (including trials merged in from other peers).
 */
import { distributionsEqual, isSingle, type Distribution } from '../distributions.js';
import type { FrozenTrial, TrialState } from '../storage/storage.js';
import type { SearchSpace } from './base.js';

function counted(state: TrialState, includePruned: boolean): boolean {
  return state === 'COMPLETE' || (includePruned && state === 'PRUNED');
}

export class IntersectionSearchSpace {
  private space: Record<string, Distribution> | null = null;
  private readonly seen = new Set<string>();

  constructor(private readonly includePruned = true) {}

  /** The intersection over the finished trials in `trials` (and all seen before); single-valued params left out. */
  calculate(trials: readonly FrozenTrial[]): SearchSpace {
    for (const t of trials) {
      if (!counted(t.state, this.includePruned) || this.seen.has(t.trialId)) continue;
      this.seen.add(t.trialId);
      if (this.space === null) {
        this.space = { ...t.distributions };
        continue;
      }
      for (const [name, d] of Object.entries(this.space)) {
        const other = t.distributions[name];
        if (!other || !distributionsEqual(other, d)) delete this.space[name];
      }
    }
    const out: SearchSpace = {};
    for (const name of Object.keys(this.space ?? {}).sort()) {
      const d = this.space![name]!;
      if (!isSingle(d)) out[name] = d;
    }
    return out;
  }
}

export class GroupDecomposedSearchSpace {
  private groups: Set<string>[] = [];
  private readonly dists = new Map<string, Distribution>();
  private readonly seen = new Set<string>();

  constructor(private readonly includePruned = true) {}

  /** The groups (each a search space; single-valued params left out, empty groups dropped), in a stable order. */
  calculate(trials: readonly FrozenTrial[]): SearchSpace[] {
    for (const t of trials) {
      if (!counted(t.state, this.includePruned) || this.seen.has(t.trialId)) continue;
      this.seen.add(t.trialId);
      this.add(t.distributions);
    }
    const out: SearchSpace[] = [];
    for (const g of this.groups) {
      const space: SearchSpace = {};
      for (const name of [...g].sort()) {
        const d = this.dists.get(name)!;
        if (!isSingle(d)) space[name] = d;
      }
      if (Object.keys(space).length > 0) out.push(space);
    }
    return out.sort((a, b) => Object.keys(a)[0]!.localeCompare(Object.keys(b)[0]!));
  }

  private add(distributions: Readonly<Record<string, Distribution>>): void {
    const names = new Set<string>();
    for (const [name, d] of Object.entries(distributions)) {
      const known = this.dists.get(name);
      // A parameter redefined with another distribution cannot be modelled jointly: give it its own
      // group under its latest definition so the rest of the space is unaffected.
      if (known && !distributionsEqual(known, d)) {
        this.groups = this.groups.map((g) => {
          g.delete(name);
          return g;
        });
        this.groups.push(new Set([name]));
      }
      this.dists.set(name, d);
      names.add(name);
    }
    const next: Set<string>[] = [];
    const covered = new Set<string>();
    for (const g of this.groups) {
      const inside = new Set<string>();
      const outside = new Set<string>();
      for (const name of g) (names.has(name) ? inside : outside).add(name);
      for (const name of inside) covered.add(name);
      if (inside.size) next.push(inside);
      if (outside.size) next.push(outside);
    }
    const fresh = [...names].filter((nm) => !covered.has(nm));
    if (fresh.length) next.push(new Set(fresh));
    this.groups = next;
  }
}
