/**
 * Parameter distributions: what a `suggest*` call may return, validated once when the call is made.
 * Samplers work in an "internal" numeric representation: floats and ints as themselves, categoricals
 * as the index of the choice. Distributions are plain JSON-able objects so they replicate unchanged.
 */

import { PeertuneError } from './errors.js';

export type ParamValue = number | string | boolean | null;

export interface FloatDistribution {
  readonly type: 'float';
  readonly low: number;
  readonly high: number;
  readonly log: boolean;
  readonly step: number | null;
}

export interface IntDistribution {
  readonly type: 'int';
  readonly low: number;
  readonly high: number;
  readonly log: boolean;
  readonly step: number;
}

export interface CategoricalDistribution {
  readonly type: 'categorical';
  readonly choices: readonly ParamValue[];
}

export type Distribution = FloatDistribution | IntDistribution | CategoricalDistribution;

/** A user mistake in a suggest call or a distribution: the message names the parameter and what is valid. */
export class DistributionError extends PeertuneError {
  override name = 'DistributionError';
}

type Warn = (message: string) => void;

function checkFinite(name: string, what: string, v: unknown): asserts v is number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new DistributionError(`parameter "${name}": ${what} must be a finite number, got ${String(v)}`);
  }
}

/** Optuna's rule: when step does not divide (high - low), high is lowered to the last reachable point. */
function adjustHighForStep(low: number, high: number, step: number): number {
  const r = high - low;
  const k = Math.floor(r / step + 1e-9);
  const adjusted = low + k * step;
  // Round away float noise such as 0.30000000000000004 while keeping exact grids exact.
  return Number(adjusted.toPrecision(15));
}

export function floatDistribution(
  name: string,
  low: number,
  high: number,
  opts: { log?: boolean; step?: number | null } = {},
  warn: Warn = () => {},
): FloatDistribution {
  checkFinite(name, 'low', low);
  checkFinite(name, 'high', high);
  const log = opts.log ?? false;
  const step = opts.step ?? null;
  if (low > high) {
    throw new DistributionError(`parameter "${name}": low (${low}) must be <= high (${high})`);
  }
  if (log && step !== null) {
    throw new DistributionError(`parameter "${name}": log and step cannot be used together; choose one`);
  }
  if (log && low <= 0) {
    throw new DistributionError(`parameter "${name}": log=true needs low > 0, got low=${low}`);
  }
  if (step !== null) {
    checkFinite(name, 'step', step);
    if (step <= 0) throw new DistributionError(`parameter "${name}": step must be > 0, got ${step}`);
    const adjusted = adjustHighForStep(low, high, step);
    if (Math.abs(adjusted - high) > 1e-12 * Math.max(1, Math.abs(high))) {
      warn(
        `The distribution of "${name}" is specified by [${low}, ${high}] and step=${step}, but the range is not divisible by step. It will be replaced by [${low}, ${adjusted}].`,
      );
      return { type: 'float', low, high: adjusted, log, step };
    }
  }
  return { type: 'float', low, high, log, step };
}

export function intDistribution(
  name: string,
  low: number,
  high: number,
  opts: { log?: boolean; step?: number } = {},
  warn: Warn = () => {},
): IntDistribution {
  checkFinite(name, 'low', low);
  checkFinite(name, 'high', high);
  if (!Number.isInteger(low) || !Number.isInteger(high)) {
    throw new DistributionError(`parameter "${name}": low and high of an int parameter must be integers, got [${low}, ${high}]`);
  }
  const log = opts.log ?? false;
  const step = opts.step ?? 1;
  if (!Number.isInteger(step) || step <= 0) {
    throw new DistributionError(`parameter "${name}": step must be a positive integer, got ${step}`);
  }
  if (low > high) {
    throw new DistributionError(`parameter "${name}": low (${low}) must be <= high (${high})`);
  }
  if (log && step !== 1) {
    throw new DistributionError(`parameter "${name}": log and step cannot be used together; choose one`);
  }
  if (log && low < 1) {
    throw new DistributionError(`parameter "${name}": log=true needs low >= 1, got low=${low}`);
  }
  const r = high - low;
  if (r % step !== 0) {
    const adjusted = low + Math.floor(r / step) * step;
    warn(
      `The distribution of "${name}" is specified by [${low}, ${high}] and step=${step}, but the range is not divisible by step. It will be replaced by [${low}, ${adjusted}].`,
    );
    return { type: 'int', low, high: adjusted, log, step };
  }
  return { type: 'int', low, high, log, step };
}

export function categoricalDistribution(name: string, choices: readonly ParamValue[]): CategoricalDistribution {
  if (!Array.isArray(choices) || choices.length === 0) {
    throw new DistributionError(`parameter "${name}": choices must be a non-empty array`);
  }
  for (const c of choices) {
    const ok = c === null || typeof c === 'string' || typeof c === 'boolean' || (typeof c === 'number' && !Number.isNaN(c));
    if (!ok) {
      throw new DistributionError(
        `parameter "${name}": choice ${JSON.stringify(c) ?? String(c)} is not allowed; choices must be strings, numbers, booleans or null`,
      );
    }
  }
  const seen = new Set<string>();
  for (const c of choices) {
    const k = choiceKey(c);
    if (seen.has(k)) throw new DistributionError(`parameter "${name}": choice ${JSON.stringify(c)} is listed twice`);
    seen.add(k);
  }
  return { type: 'categorical', choices: [...choices] };
}

function choiceKey(c: ParamValue): string {
  return `${c === null ? 'null' : typeof c}:${String(c)}`;
}

export function distributionsEqual(a: Distribution, b: Distribution): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'categorical' && b.type === 'categorical') {
    return a.choices.length === b.choices.length && a.choices.every((c, i) => choiceKey(c) === choiceKey(b.choices[i]!));
  }
  const x = a as FloatDistribution | IntDistribution;
  const y = b as FloatDistribution | IntDistribution;
  return x.low === y.low && x.high === y.high && x.log === y.log && x.step === y.step;
}

/** Human-readable form, used in error messages: `FloatDistribution(low=0, high=1, log=false, step=null)`. */
export function describeDistribution(d: Distribution): string {
  switch (d.type) {
    case 'float':
      return `FloatDistribution(low=${d.low}, high=${d.high}, log=${d.log}, step=${d.step})`;
    case 'int':
      return `IntDistribution(low=${d.low}, high=${d.high}, log=${d.log}, step=${d.step})`;
    case 'categorical':
      return `CategoricalDistribution(choices=${JSON.stringify(d.choices)})`;
  }
}

/** True when the distribution has exactly one possible value (samplers skip such parameters). */
export function isSingle(d: Distribution): boolean {
  if (d.type === 'categorical') return d.choices.length === 1;
  return d.low === d.high;
}

export function singleValue(d: Distribution): ParamValue {
  return d.type === 'categorical' ? d.choices[0]! : d.low;
}

/** Whether an external value is a legal value of the distribution. */
export function contains(d: Distribution, value: unknown): boolean {
  if (d.type === 'categorical') {
    return d.choices.some((c) => choiceKey(c) === choiceKey(value as ParamValue) && (typeof c === typeof value || c === value));
  }
  if (typeof value !== 'number' || !Number.isFinite(value)) return false;
  if (value < d.low - 1e-12 || value > d.high + 1e-12) return false;
  if (d.type === 'int') {
    if (!Number.isInteger(value)) return false;
    return (value - d.low) % d.step === 0;
  }
  if (d.step !== null) {
    const k = (value - d.low) / d.step;
    return Math.abs(k - Math.round(k)) < 1e-8;
  }
  return true;
}

/** External value -> internal number (categorical: index of the choice). */
export function toInternal(d: Distribution, value: ParamValue): number {
  if (d.type === 'categorical') {
    const k = choiceKey(value);
    const i = d.choices.findIndex((c) => choiceKey(c) === k);
    if (i < 0) throw new DistributionError(`value ${JSON.stringify(value)} is not one of ${JSON.stringify(d.choices)}`);
    return i;
  }
  return value as number;
}

/** Internal number -> external value, rounded onto the distribution's grid and clipped into range. */
export function toExternal(d: Distribution, internal: number): ParamValue {
  switch (d.type) {
    case 'categorical':
      return d.choices[Math.min(d.choices.length - 1, Math.max(0, Math.round(internal)))]!;
    case 'int': {
      const k = Math.round((internal - d.low) / d.step);
      const v = d.low + k * d.step;
      return Math.min(d.high, Math.max(d.low, v));
    }
    case 'float': {
      let v = internal;
      if (d.step !== null) {
        const k = Math.round((v - d.low) / d.step);
        v = Number((d.low + k * d.step).toPrecision(15));
      }
      return Math.min(d.high, Math.max(d.low, v));
    }
  }
}

/** Checks a distribution that arrived as data (an enqueued trial, a replica, a file). */
export function parseDistribution(raw: unknown): Distribution {
  if (!raw || typeof raw !== 'object') throw new DistributionError(`distribution must be an object, got ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  switch (r['type']) {
    case 'float':
      return floatDistribution('?', r['low'] as number, r['high'] as number, { log: Boolean(r['log']), step: (r['step'] as number | null) ?? null });
    case 'int':
      return intDistribution('?', r['low'] as number, r['high'] as number, { log: Boolean(r['log']), step: (r['step'] as number) ?? 1 });
    case 'categorical':
      return categoricalDistribution('?', r['choices'] as ParamValue[]);
    default:
      throw new DistributionError(`unknown distribution type ${JSON.stringify(r['type'])}; expected float, int or categorical`);
  }
}
