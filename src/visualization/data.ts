/**
 * What a plot reads from a study, and the compact wire form the dashboard sends it in.
 *
 * Plots take a `PlotStudy`: directions plus trials shaped like `FrozenTrial` (a `Study` is one, so
 * `plotSlice(study)` works from code). The dashboard cannot ship FrozenTrial objects to a browser at
 * 10,000+ trials, so the server encodes each trial as one positional array (`TrialRow`, no repeated
 * field names; params as `[paramIndex, value, ...]` pairs against a shared header) and the page decodes
 * rows back into `PlotTrial`s, so the very same figure functions run on both sides.
 *
 * This module and the figure modules import nothing from Node: the dashboard serves them to the
 * browser as ES modules.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import type { FrozenTrial, StudyDirection, TrialState } from '../storage/storage.js';
import { PeertuneError } from '../errors.js';

/** A plot asked for something the study cannot give (no target for a multi-objective study, an unknown param). */
export class PlotError extends PeertuneError {
  override name = 'PlotError';
}

export const STATES: readonly TrialState[] = ['WAITING', 'RUNNING', 'COMPLETE', 'PRUNED', 'FAIL'];

/** The fields of a FrozenTrial the plots read. */
/** The fields of a FrozenTrial the plots read (the dashboard's decoded rows have exactly these). */
export type PlotTrial = Pick<
  FrozenTrial,
  'trialId' | 'number' | 'owner' | 'state' | 'values' | 'params' | 'distributions' | 'intermediateValues' | 'userAttrs' | 'systemAttrs' | 'datetimeStart' | 'datetimeComplete'
>;

export interface PlotStudy {
  readonly directions: readonly StudyDirection[];
  readonly trials: readonly PlotTrial[];
}

export interface ParamInfo {
  readonly name: string;
  readonly distribution: Distribution;
}

/**
 * One trial on the wire: [id, number, stateIndex, ownerIndex, values, params, start ms, complete ms,
 * intermediate (step, value pairs), userAttrs, systemAttrs]. id: the seq when the trial id is
 * `owner:seq` with a numeric seq (peer ids are 52 characters; sent once in the header), else the
 * whole trial id. params: [paramIndex, value, ...].
 */
export type TrialRow = [
  number | string,
  number,
  number,
  number,
  number[] | null,
  (number | ParamValue)[],
  number | null,
  number | null,
  number[] | null,
  Record<string, unknown> | null,
  Record<string, unknown> | null,
];

/**
 * The header a set of rows refers to: params and owners by index. Indices only grow (a param or peer
 * seen once keeps its index), so rows encoded earlier stay valid after a delta adds one.
 */
export class RowHeader {
  readonly params: ParamInfo[] = [];
  readonly owners: string[] = [];
  private readonly byName = new Map<string, number>();
  private readonly byOwner = new Map<string, number>();

  ownerIndex(owner: string): number {
    let i = this.byOwner.get(owner);
    if (i === undefined) {
      i = this.owners.length;
      this.byOwner.set(owner, i);
      this.owners.push(owner);
    }
    return i;
  }

  indexOf(name: string, d: Distribution): number {
    let i = this.byName.get(name);
    if (i === undefined) {
      i = this.params.length;
      this.byName.set(name, i);
      this.params.push({ name, distribution: d });
    } else if (d.type === 'categorical') {
      // Conditional spaces may give one name more choices in later trials: keep the union.
      const known = this.params[i]!.distribution;
      if (known.type === 'categorical') {
        const extra = d.choices.filter((c) => !known.choices.includes(c));
        if (extra.length) this.params[i] = { name, distribution: { type: 'categorical', choices: [...known.choices, ...extra] } };
      }
    }
    return i;
  }
}

export function encodeTrial(t: PlotTrial, index: RowHeader): TrialRow {
  const params: (number | ParamValue)[] = [];
  for (const name of Object.keys(t.params)) {
    const d = t.distributions[name];
    if (!d) continue;
    params.push(index.indexOf(name, d), t.params[name]!);
  }
  let iv: number[] | null = null;
  if (t.intermediateValues.size > 0) {
    iv = [];
    for (const [s, v] of [...t.intermediateValues].sort((a, b) => a[0] - b[0])) iv.push(s, v);
  }
  const ua = Object.keys(t.userAttrs).length ? (t.userAttrs as Record<string, unknown>) : null;
  const sa = Object.keys(t.systemAttrs).length ? (t.systemAttrs as Record<string, unknown>) : null;
  const seq = t.trialId.startsWith(`${t.owner}:`) ? t.trialId.slice(t.owner.length + 1) : null;
  const id = seq !== null && /^(0|[1-9][0-9]{0,14})$/.test(seq) ? Number(seq) : t.trialId;
  return [
    id,
    t.number,
    STATES.indexOf(t.state),
    index.ownerIndex(t.owner),
    t.values ? [...t.values] : null,
    params,
    t.datetimeStart ? t.datetimeStart.getTime() : null,
    t.datetimeComplete ? t.datetimeComplete.getTime() : null,
    iv,
    ua,
    sa,
  ];
}

const NO_ATTRS: Readonly<Record<string, unknown>> = Object.freeze({});

/**
 * A trial decoded from its row. Only what every view reads (id, number, state, owner, values) is
 * set at once; params, intermediate values, attrs and dates are built on first read and kept. At
 * 100,000 trials decoding everything up front took as long as parsing the JSON; most views read a
 * few fields of most trials, and the table only the rows it shows.
 */
class DecodedTrial implements PlotTrial {
  readonly trialId: string;
  readonly number: number;
  readonly state: TrialState;
  readonly owner: string;
  readonly values: readonly number[] | null;
  #row: TrialRow;
  #header: readonly ParamInfo[];
  #params?: Record<string, ParamValue>;
  #distributions?: Record<string, Distribution>;
  #iv?: ReadonlyMap<number, number>;
  #start?: Date | null;
  #complete?: Date | null;

  constructor(row: TrialRow, header: readonly ParamInfo[], owner: string) {
    this.#row = row;
    this.#header = header;
    this.owner = owner;
    this.trialId = typeof row[0] === 'number' ? `${owner}:${row[0]}` : row[0];
    this.number = row[1];
    this.state = STATES[row[2]] ?? 'FAIL';
    this.values = row[4];
  }

  get params(): Readonly<Record<string, ParamValue>> {
    if (!this.#params) this.#fillParams();
    return this.#params!;
  }

  get distributions(): Readonly<Record<string, Distribution>> {
    if (!this.#distributions) this.#fillParams();
    return this.#distributions!;
  }

  #fillParams(): void {
    const p: Record<string, ParamValue> = {};
    const d: Record<string, Distribution> = {};
    const flat = this.#row[5];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const info = this.#header[flat[i] as number];
      if (!info) continue;
      p[info.name] = flat[i + 1] as ParamValue;
      d[info.name] = info.distribution;
    }
    this.#params = p;
    this.#distributions = d;
  }

  get intermediateValues(): ReadonlyMap<number, number> {
    if (!this.#iv) {
      const iv = new Map<number, number>();
      const flat = this.#row[8];
      if (flat) for (let i = 0; i + 1 < flat.length; i += 2) iv.set(flat[i]!, flat[i + 1]!);
      this.#iv = iv;
    }
    return this.#iv;
  }

  get userAttrs(): Readonly<Record<string, unknown>> {
    return this.#row[9] ?? NO_ATTRS;
  }

  get systemAttrs(): Readonly<Record<string, unknown>> {
    return this.#row[10] ?? NO_ATTRS;
  }

  get datetimeStart(): Date | null {
    if (this.#start === undefined) this.#start = this.#row[6] !== null ? new Date(this.#row[6]) : null;
    return this.#start;
  }

  get datetimeComplete(): Date | null {
    if (this.#complete === undefined) this.#complete = this.#row[7] !== null ? new Date(this.#row[7]) : null;
    return this.#complete;
  }
}

export function decodeTrial(row: TrialRow, params: readonly ParamInfo[], owners: readonly string[]): PlotTrial {
  return new DecodedTrial(row, params, owners[row[3]] ?? '?');
}

/** Param names in first-seen order with the distribution of their first trial (categorical: all choices seen). */
export function paramsOf(trials: readonly PlotTrial[]): ParamInfo[] {
  const index = new RowHeader();
  for (const t of trials) for (const name of Object.keys(t.distributions)) index.indexOf(name, t.distributions[name]!);
  return index.params;
}

/** The objective a plot shows: `values[objective]`, or a user function of the trial (Optuna's `target`). */
export type Target = (t: PlotTrial) => number | null;

export function targetOf(study: PlotStudy, opts: { target?: Target; objective?: number } | undefined, what: string): Target {
  if (opts?.target) return opts.target;
  const k = opts?.objective ?? 0;
  if (study.directions.length > 1 && opts?.objective === undefined) {
    throw new PlotError(`${what} of a multi-objective study needs a target (a function of the trial) or an objective index`);
  }
  return (t) => (t.values && t.values.length > k && Number.isFinite(t.values[k]) ? t.values[k]! : null);
}

/** A numeric coordinate for a param value: categorical -> choice index; the axis scale decides log. */
export function paramCoordinate(d: Distribution, v: ParamValue): number | null {
  if (d.type === 'categorical') {
    const i = d.choices.indexOf(v);
    return i < 0 ? null : i;
  }
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function isLogParam(d: Distribution): boolean {
  return d.type !== 'categorical' && d.log;
}
