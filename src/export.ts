/**
 * Trials export. `trialsToRows` gives Optuna's trials_dataframe columns (number, value or values_i,
 * datetime_start, datetime_complete, duration, params_*, user_attrs_*, system_attrs_*, state) plus
 * peertune's trial_id and owner; CSV is those rows. JSON keeps every field with its type, and
 * `parseTrialsJson` reads it back into FrozenTrial objects (the round trip the tests check).
 */
import { parseDistribution, type Distribution, type ParamValue } from './distributions.js';
import { PeertuneError } from './errors.js';
import { TRIAL_STATES, frozenTrial, type FrozenTrial, type StudyDirection, type TrialState } from './storage/storage.js';
import { describeChanges, hasLineage, memberOf } from './pbt/lineage.js';

export type Cell = string | number | boolean | null;
export type Row = Record<string, Cell>;

interface StudyLike {
  readonly directions: readonly StudyDirection[];
  readonly trials: readonly FrozenTrial[];
}

function cell(v: unknown): Cell {
  if (v === undefined || v === null) return null;
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  return JSON.stringify(v);
}

export function trialsToRows(study: StudyLike): { columns: string[]; rows: Row[] } {
  const trials = study.trials;
  const multi = study.directions.length > 1;
  const paramNames = new Set<string>();
  const userKeys = new Set<string>();
  const sysKeys = new Set<string>();
  for (const t of trials) {
    Object.keys(t.params).forEach((k) => paramNames.add(k));
    Object.keys(t.userAttrs).forEach((k) => userKeys.add(k));
    Object.keys(t.systemAttrs).forEach((k) => sysKeys.add(k));
  }
  const valueCols = multi ? study.directions.map((_, i) => `values_${i}`) : ['value'];
  // Population-based training: each trial's member (population slot), the trial it cloned, the step it
  // started from and its perturbation, as this replica's trial numbers.
  const lineageCols = hasLineage(trials) ? ['pbt_member', 'pbt_parent', 'pbt_start_step', 'pbt_perturbation'] : [];
  const columns = [
    'number',
    ...valueCols,
    'datetime_start',
    'datetime_complete',
    'duration',
    ...[...paramNames].sort().map((k) => `params_${k}`),
    ...[...userKeys].sort().map((k) => `user_attrs_${k}`),
    ...[...sysKeys].sort().map((k) => `system_attrs_${k}`),
    ...lineageCols,
    'state',
    'trial_id',
    'owner',
  ];
  const byId = new Map(trials.map((t) => [t.trialId, t] as const));
  const rows = trials.map((t) => {
    const r: Row = {};
    for (const c of columns) r[c] = null;
    r['number'] = t.number;
    valueCols.forEach((c, i) => (r[c] = t.values?.[i] ?? null));
    r['datetime_start'] = t.datetimeStart?.toISOString() ?? null;
    r['datetime_complete'] = t.datetimeComplete?.toISOString() ?? null;
    r['duration'] = t.datetimeStart && t.datetimeComplete ? (t.datetimeComplete.getTime() - t.datetimeStart.getTime()) / 1000 : null;
    for (const [k, v] of Object.entries(t.params)) r[`params_${k}`] = cell(v);
    for (const [k, v] of Object.entries(t.userAttrs)) r[`user_attrs_${k}`] = cell(v);
    for (const [k, v] of Object.entries(t.systemAttrs)) r[`system_attrs_${k}`] = cell(v);
    if (lineageCols.length) {
      const parent = typeof t.systemAttrs['pbtParent'] === 'string' ? byId.get(t.systemAttrs['pbtParent']) : undefined;
      r['pbt_member'] = byId.get(memberOf(t, byId))?.number ?? null;
      r['pbt_parent'] = parent?.number ?? null;
      r['pbt_start_step'] = typeof t.systemAttrs['pbtStartStep'] === 'number' ? t.systemAttrs['pbtStartStep'] : null;
      r['pbt_perturbation'] = describeChanges(t) || null;
    }
    r['state'] = t.state;
    r['trial_id'] = t.trialId;
    r['owner'] = t.owner;
    return r;
  });
  return { columns, rows };
}

function csvField(v: Cell): string {
  if (v === null) return '';
  // A text cell starting with = + - @ (or tab, CR) is a live formula in a spreadsheet, and params and
  // attrs come from other peers: prefix a single quote, which spreadsheets show as text.
  const s = typeof v === 'string' && /^[=+\-@\t\r]/.test(v) ? `'${v}` : String(v);
  return /[",\n\r]/.test(s) || s !== s.trim() ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(study: StudyLike): string {
  const { columns, rows } = trialsToRows(study);
  const lines = [columns.map((c) => csvField(c)).join(',')];
  for (const r of rows) lines.push(columns.map((c) => csvField(r[c] ?? null)).join(','));
  return lines.join('\n') + '\n';
}

/** RFC 4180 parser for what toCsv writes (and spreadsheets write back): quoted fields, "" escapes. */
export function parseCsv(text: string): { columns: string[]; rows: Record<string, string>[] } {
  const records: string[][] = [];
  let field = '';
  let rec: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else quoted = false;
      } else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ',') {
      rec.push(field);
      field = '';
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      rec.push(field);
      records.push(rec);
      rec = [];
      field = '';
    } else field += ch;
  }
  if (field !== '' || rec.length) {
    rec.push(field);
    records.push(rec);
  }
  const [header = [], ...body] = records;
  return { columns: header, rows: body.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i] ?? '']))) };
}

export interface TrialJson {
  number: number;
  trialId: string;
  owner: string;
  state: TrialState;
  values: number[] | null;
  params: Record<string, ParamValue>;
  distributions: Record<string, Distribution>;
  /** step -> value; NaN and ±Infinity (which JSON cannot hold) are written as null. */
  intermediateValues: Record<string, number | null>;
  userAttrs: Record<string, unknown>;
  systemAttrs: Record<string, unknown>;
  datetimeStart: string | null;
  datetimeComplete: string | null;
}

export function trialToJson(t: FrozenTrial): TrialJson {
  return {
    number: t.number,
    trialId: t.trialId,
    owner: t.owner,
    state: t.state,
    values: t.values ? [...t.values] : null,
    params: { ...t.params },
    distributions: { ...t.distributions },
    intermediateValues: Object.fromEntries([...t.intermediateValues].sort((a, b) => a[0] - b[0]).map(([s, v]) => [String(s), Number.isFinite(v) ? v : null])),
    userAttrs: { ...t.userAttrs },
    systemAttrs: { ...t.systemAttrs },
    datetimeStart: t.datetimeStart?.toISOString() ?? null,
    datetimeComplete: t.datetimeComplete?.toISOString() ?? null,
  };
}

export function toJson(study: StudyLike & { studyName?: string }): string {
  return JSON.stringify({ studyName: study.studyName ?? null, directions: study.directions, trials: study.trials.map(trialToJson) }, null, 2) + '\n';
}

export class ExportFormatError extends PeertuneError {
  override name = 'ExportFormatError';
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isParamValue = (v: unknown): boolean => v === null || ['string', 'boolean'].includes(typeof v) || (typeof v === 'number' && Number.isFinite(v));
const isTime = (v: unknown): boolean => v === null || v === undefined || (typeof v === 'string' && !Number.isNaN(Date.parse(v)));

/** Reads `toJson` output back; every field is checked, and the error names the trial and field. */
export function parseTrialsJson(text: string): { studyName: string | null; directions: StudyDirection[]; trials: FrozenTrial[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ExportFormatError(`trials JSON does not parse: ${(e as Error).message}`);
  }
  const doc = raw as { studyName?: unknown; directions?: unknown; trials?: unknown };
  if (!doc || typeof doc !== 'object' || !Array.isArray(doc.trials) || !Array.isArray(doc.directions)) {
    throw new ExportFormatError('trials JSON must be an object with "directions" and "trials" arrays');
  }
  const trials = doc.trials.map((x, i) => {
    const t = x as TrialJson;
    const where = `trial at index ${i}`;
    if (typeof t.number !== 'number' || typeof t.trialId !== 'string' || typeof t.owner !== 'string') {
      throw new ExportFormatError(`${where}: number, trialId and owner are required`);
    }
    if (!TRIAL_STATES.includes(t.state)) throw new ExportFormatError(`${where}: unknown state ${JSON.stringify(t.state)}`);
    const values = t.values ?? null;
    if (values !== null && (!Array.isArray(values) || !values.every((v) => typeof v === 'number'))) {
      throw new ExportFormatError(`${where}: values must be null or an array of numbers`);
    }
    for (const field of ['params', 'distributions', 'intermediateValues', 'userAttrs', 'systemAttrs'] as const) {
      if (t[field] !== undefined && !isObject(t[field])) throw new ExportFormatError(`${where}: ${field} must be an object`);
    }
    for (const [k, v] of Object.entries(t.params ?? {})) {
      if (!isParamValue(v)) throw new ExportFormatError(`${where}: param "${k}" must be a finite number, a string, a boolean or null`);
    }
    const distributions: Record<string, Distribution> = {};
    for (const [k, d] of Object.entries(t.distributions ?? {})) distributions[k] = parseDistribution(d);
    const intermediateValues = new Map<number, number>();
    for (const [s, v] of Object.entries(t.intermediateValues ?? {})) {
      const step = Number(s);
      // JSON has no NaN: toJson writes a NaN or infinite report as null, read back as NaN.
      if (!Number.isSafeInteger(step) || step < 0 || (typeof v !== 'number' && v !== null)) {
        throw new ExportFormatError(`${where}: intermediateValues must map non-negative integer steps to numbers`);
      }
      intermediateValues.set(step, v ?? NaN);
    }
    if (!isTime(t.datetimeStart) || !isTime(t.datetimeComplete)) throw new ExportFormatError(`${where}: datetimeStart and datetimeComplete must be ISO dates or null`);
    return frozenTrial({
      trialId: t.trialId,
      number: t.number,
      owner: t.owner,
      state: t.state,
      values,
      params: t.params ?? {},
      distributions,
      intermediateValues,
      userAttrs: t.userAttrs ?? {},
      systemAttrs: t.systemAttrs ?? {},
      datetimeStart: t.datetimeStart ? new Date(t.datetimeStart) : null,
      datetimeComplete: t.datetimeComplete ? new Date(t.datetimeComplete) : null,
    });
  });
  return { studyName: typeof doc.studyName === 'string' ? doc.studyName : null, directions: doc.directions as StudyDirection[], trials };
}
