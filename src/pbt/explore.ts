/**
 * PBT's explore step, as Ray Tune does it (`PopulationBasedTraining._explore`), with one mend: every
 * new value is clipped to its distribution. For each mutated parameter: a choice list (or a
 * categorical distribution) resamples with `resampleProbability` (or when the value is not in the
 * list), else moves to a neighbouring choice; a numeric distribution (or a function) resamples with
 * `resampleProbability`, else multiplies the value by one of `perturbationFactors`. Then
 * `customExploreFn` sees the result, and the clipping runs last. Pure: the randomness comes in.
 */
import { contains, toExternal, type Distribution, type ParamValue } from '../distributions.js';
import type { Rng } from '../rng.js';

/** How a parameter may change: a distribution, a list of choices, or a function that draws a value. */
export type Mutation = Distribution | readonly ParamValue[] | (() => ParamValue);

/** One parameter's change at a perturbation: old value, new value, and how (`*1.2`, `resample`, `choice+1`, `custom`, `clipped`). */
export interface ParamChange {
  from: ParamValue;
  to: ParamValue;
  how: string;
}

export interface ExploreSettings {
  resampleProbability: number;
  perturbationFactors: readonly number[];
  customExploreFn?: ((config: Record<string, ParamValue>) => Record<string, ParamValue>) | undefined;
}

const isDistribution = (m: Mutation): m is Distribution => typeof m === 'object' && m !== null && !Array.isArray(m) && 'type' in m;

/** A value drawn from the distribution (log-uniform for log scales, on the step grid). */
export function resample(d: Distribution, rng: Rng): ParamValue {
  if (d.type === 'categorical') return d.choices[rng.int(0, d.choices.length - 1)]!;
  const pad = d.type === 'int' ? 0.5 * d.step : 0;
  const low = d.low - pad;
  const high = d.high + pad;
  const x = d.log ? Math.exp(rng.uniform(Math.log(Math.max(low, d.type === 'int' ? 0.5 : Number.MIN_VALUE)), Math.log(high))) : rng.uniform(low, high);
  return toExternal(d, x);
}

function sameValue(a: ParamValue, b: ParamValue): boolean {
  return a === b && typeof a === typeof b;
}

function shiftChoice(choices: readonly ParamValue[], value: ParamValue, s: ExploreSettings, rng: Rng): { to: ParamValue; how: string } {
  const i = choices.findIndex((c) => sameValue(c, value));
  if (i < 0 || rng.random() < s.resampleProbability) return { to: choices[rng.int(0, choices.length - 1)]!, how: 'resample' };
  const shift = rng.random() < 0.5 ? -1 : 1;
  const j = Math.max(0, Math.min(choices.length - 1, i + shift));
  return { to: choices[j]!, how: `choice${shift > 0 ? '+1' : '-1'}` };
}

/** Clips a value into a distribution (numbers onto its range and grid); a categorical value not listed is left as it is. */
export function clip(d: Distribution, v: ParamValue): ParamValue {
  if (contains(d, v)) return v;
  if (d.type === 'categorical' || typeof v !== 'number' || !Number.isFinite(v)) return v;
  return toExternal(d, v);
}

/**
 * The explored config: `config` (the cloned member's params) with every mutated parameter changed,
 * then `customExploreFn`, then each value clipped to its mutation's distribution and to `distributions`
 * (the cloned trial's own, which `suggest*` will check). Returns the new params and what changed.
 */
export function explore(
  config: Readonly<Record<string, ParamValue>>,
  mutations: Readonly<Record<string, Mutation>>,
  distributions: Readonly<Record<string, Distribution>>,
  s: ExploreSettings,
  rng: Rng,
): { params: Record<string, ParamValue>; changes: Record<string, ParamChange> } {
  const params: Record<string, ParamValue> = { ...config };
  const how: Record<string, string> = {};
  for (const [name, m] of Object.entries(mutations)) {
    if (!(name in config)) continue; // a parameter the member never suggested (define-by-run)
    const value = config[name]!;
    const d = distributions[name];
    if (Array.isArray(m) || (isDistribution(m) && m.type === 'categorical')) {
      const choices = Array.isArray(m) ? (m as readonly ParamValue[]) : (m as { choices: readonly ParamValue[] }).choices;
      const r = shiftChoice(choices, value, s, rng);
      params[name] = r.to;
      how[name] = r.how;
    } else if (rng.random() < s.resampleProbability || typeof value !== 'number') {
      params[name] = isDistribution(m) ? resample(m, rng) : (m as () => ParamValue)();
      how[name] = 'resample';
    } else {
      const f = s.perturbationFactors[rng.int(0, s.perturbationFactors.length - 1)]!;
      let v = value * f;
      if (d?.type === 'int' || (isDistribution(m) && m.type === 'int')) v = Math.round(v);
      params[name] = v;
      how[name] = `*${f}`;
    }
  }
  let out = params;
  if (s.customExploreFn) {
    out = { ...s.customExploreFn({ ...params }) };
    for (const k of Object.keys(out)) if (!sameValue(out[k]!, params[k] ?? null) || !(k in params)) how[k] = 'custom';
  }
  const changes: Record<string, ParamChange> = {};
  for (const [name, v0] of Object.entries(out)) {
    let v = v0;
    const m = mutations[name];
    if (m !== undefined && isDistribution(m)) v = clip(m, v);
    const d = distributions[name];
    if (d) v = clip(d, v);
    if (!sameValue(v, v0)) how[name] = `${how[name] ?? ''}${how[name] ? ',' : ''}clipped`;
    out[name] = v;
    const from = config[name] ?? null;
    if (how[name] !== undefined) changes[name] = { from, to: v, how: how[name]! };
  }
  return { params: out, changes };
}
