/**
 * Samplers and pruners by name, for the command line. A study's choice (name + options) is stored in
 * the study itself (system attrs `sampler` / `pruner`) at create-study, so every worker that joins
 * later, on any machine, builds the same algorithm without being told. Adding an algorithm to the CLI
 * is one line in SAMPLERS or PRUNERS.
 */
import type { Pruner } from '../pruners/base.js';
import { MedianPruner } from '../pruners/median.js';
import { NopPruner } from '../pruners/nop.js';
import { PatientPruner } from '../pruners/patient.js';
import { PercentilePruner } from '../pruners/percentile.js';
import { ThresholdPruner } from '../pruners/threshold.js';
import { HyperbandPruner } from '../pruners/hyperband.js';
import { SuccessiveHalvingPruner } from '../pruners/successive-halving.js';
import { pbtFromJson } from '../pbt/pbt.js';
import type { Sampler } from '../samplers/base.js';
import { GridSampler } from '../samplers/grid.js';
import { TPESampler } from '../samplers/tpe/sampler.js';
import { NSGAIISampler } from '../samplers/nsga2.js';
import { RandomSampler } from '../samplers/random.js';
import { GPSampler } from '../samplers/gp/sampler.js';
import { QMCSampler } from '../samplers/qmc.js';
import { CmaEsSampler } from '../samplers/cmaes.js';
import type { StudyInfo } from '../storage/storage.js';
import { UsageError } from './errors.js';
import { checkStoredSetting } from './settings.js';

type Options = Record<string, unknown>;

/** An algorithm the CLI can build from a name and JSON options. */
export interface AlgorithmSpec {
  name: string;
  options: Options;
}

export const SAMPLERS: Record<string, (o: Options) => Sampler | Promise<Sampler>> = {
  random: (o) => new RandomSampler(o as { seed?: number }),
  tpe: (o) => new TPESampler(o),
  grid: (o) => {
    const { searchSpace, ...rest } = o;
    if (!searchSpace || typeof searchSpace !== 'object') {
      throw new UsageError('sampler "grid" needs a searchSpace option, e.g. --sampler-options \'{"searchSpace":{"x":[0,1,2]}}\'');
    }
    return new GridSampler(searchSpace as ConstructorParameters<typeof GridSampler>[0], rest);
  },
  nsga2: (o) => new NSGAIISampler(o),
  gp: (o) => new GPSampler(o),
  qmc: (o) => new QMCSampler(o),
  cmaes: (o) => new CmaEsSampler(o),
};

export const PRUNERS: Record<string, (o: Options) => Pruner | Promise<Pruner>> = {
  nop: () => new NopPruner(),
  median: (o) => new MedianPruner(o),
  percentile: (o) => {
    const { percentile, ...rest } = o;
    if (typeof percentile !== 'number') throw new UsageError('pruner "percentile" needs a numeric percentile option, e.g. --pruner-options \'{"percentile":25}\'');
    return new PercentilePruner(percentile, rest);
  },
  threshold: (o) => new ThresholdPruner(o),
  patient: async (o) => {
    const { wrapped, ...rest } = o;
    const inner = wrapped === undefined || wrapped === null ? null : await createPruner(parseWrapped(wrapped));
    return new PatientPruner(inner, rest as unknown as ConstructorParameters<typeof PatientPruner>[1]);
  },
  'successive-halving': (o) => new SuccessiveHalvingPruner(o),
  hyperband: (o) => new HyperbandPruner(o),
  pbt: (o) => pbtFromJson(o),
};

function parseWrapped(w: unknown): AlgorithmSpec {
  if (typeof w === 'string') return { name: w, options: {} };
  if (w && typeof w === 'object' && typeof (w as AlgorithmSpec).name === 'string') {
    return { name: (w as AlgorithmSpec).name, options: ((w as AlgorithmSpec).options ?? {}) as Options };
  }
  throw new UsageError(`pruner "patient": option "wrapped" must be a pruner name or {"name": ..., "options": {...}}, got ${JSON.stringify(w)}`);
}

/** Parses `--sampler-options` / `--pruner-options` JSON text. */
export function parseOptionsJson(flag: string, text: string | undefined): Options {
  if (text === undefined) return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} must be a JSON object, e.g. '{"seed": 1}'; got ${JSON.stringify(text)}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new UsageError(`${flag} must be a JSON object, e.g. '{"seed": 1}'; got ${text}`);
  return v as Options;
}

function checkName(kind: 'sampler' | 'pruner', name: string, table: Record<string, unknown>): void {
  if (!Object.prototype.hasOwnProperty.call(table, name)) {
    throw new UsageError(`unknown ${kind} "${name}"; valid ${kind}s: ${Object.keys(table).join(', ')}`);
  }
}

async function build<T>(kind: 'sampler' | 'pruner', spec: AlgorithmSpec, table: Record<string, (o: Options) => T | Promise<T>>): Promise<T> {
  checkName(kind, spec.name, table);
  try {
    return await table[spec.name]!(spec.options);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    // Constructors validate their options; their message names the option, so pass it on as a usage error.
    throw new UsageError(`${kind} "${spec.name}": ${err instanceof Error ? err.message : String(err)}`);
  }
}

export function createSampler(spec: AlgorithmSpec): Promise<Sampler> {
  return build('sampler', spec, SAMPLERS);
}

export function createPruner(spec: AlgorithmSpec): Promise<Pruner> {
  return build('pruner', spec, PRUNERS);
}

/**
 * Reads the spec a study was created with (null when the study was made without the CLI). It comes
 * from the replica, so its options are bounded first (settings.ts; throws a UsageError naming them).
 */
export function storedSpec(info: StudyInfo, key: 'sampler' | 'pruner'): AlgorithmSpec | null {
  const raw = info.systemAttrs[key] as AlgorithmSpec | undefined;
  if (!raw || typeof raw.name !== 'string') return null;
  const spec = { name: raw.name, options: raw.options && typeof raw.options === 'object' ? raw.options : {} };
  checkStoredSetting(key, spec, info.studyName);
  return spec;
}
