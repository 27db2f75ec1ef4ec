/**
 * Output of the query commands: aligned text tables for people, CSV and JSON for programs. Trial rows
 * and the CSV/JSON forms come from src/export.ts so the command and the library export the same columns.
 */
import type { FrozenTrial, StudyDirection } from '../storage/storage.js';
import { trialsToRows, type Cell } from '../export.js';

export type Format = 'table' | 'json' | 'csv';

// C0 controls but tab and newline, DEL, and the C1 controls (U+009B is a one-character CSI on some
// terminals); U+2028/2029 end lines in some viewers.
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]/g;
const CONTROL_OR_NEWLINE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function escapeChar(c: string): string {
  // JSON's escape form, so JSON output stays valid JSON and a person can still read it.
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Text safe for a terminal: control characters (escape sequences, carriage returns, C1 controls)
 * become visible `\uXXXX` escapes. With `oneLine`, newlines and tabs are escaped too, so a string from
 * the network cannot start a forged log line. Everything the CLI prints goes through this, because
 * study names, params and attrs come from other peers.
 */
export function terminalSafe(text: string, { oneLine = false }: { oneLine?: boolean } = {}): string {
  return text.replace(oneLine ? CONTROL_OR_NEWLINE : CONTROL, escapeChar);
}

/**
 * CSV for a terminal: a quoted cell may hold a newline (valid CSV), which on a terminal starts what
 * looks like a new line of output, so newlines inside quoted cells are escaped as well.
 */
export function terminalCsv(csv: string): string {
  let inQuotes = false;
  let out = '';
  for (const ch of csv) {
    if (ch === '"') inQuotes = !inQuotes;
    out += inQuotes && (ch === '\n' || ch === '\r') ? escapeChar(ch) : ch;
  }
  return terminalSafe(out);
}

export function table(columns: string[], rows: Cell[][]): string {
  const text = (c: Cell) => (c === null ? '' : terminalSafe(String(c), { oneLine: true }));
  columns = columns.map((c) => terminalSafe(c, { oneLine: true }));
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => text(r[i] ?? null).length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  const out = [line(columns), line(widths.map((w) => '-'.repeat(w)))];
  for (const r of rows) out.push(line(r.map(text)));
  return out.join('\n') + '\n';
}

/** Trials as a table: Optuna's dataframe columns minus system attrs (too wide for a terminal). */
export function trialsTable(trials: readonly FrozenTrial[], directions: readonly StudyDirection[]): string {
  const { columns, rows } = trialsToRows({ directions, trials });
  const shown = columns.filter((c) => !c.startsWith('system_attrs_') && c !== 'trial_id' && c !== 'datetime_complete');
  return table(
    shown,
    rows.map((r) => shown.map((c) => shorten(c, r[c] ?? null))),
  );
}

function shorten(column: string, v: Cell): Cell {
  if (column === 'owner' && typeof v === 'string' && v.length > 16) return '…' + v.slice(-8);
  if (column === 'datetime_start' && typeof v === 'string') return v.replace('T', ' ').replace(/\.\d+Z$/, '');
  if (typeof v === 'number' && !Number.isInteger(v)) return Number(v.toPrecision(6));
  return v;
}

/** One trial as plain JSON with snake_case keys (every JSON the CLI prints uses this form). */
export function trialJson(t: FrozenTrial): Record<string, unknown> {
  return {
    number: t.number,
    trial_id: t.trialId,
    owner: t.owner,
    state: t.state,
    value: t.value,
    values: t.values,
    params: t.params,
    distributions: t.distributions,
    user_attrs: t.userAttrs,
    system_attrs: t.systemAttrs,
    intermediate_values: Object.fromEntries(t.intermediateValues),
    datetime_start: t.datetimeStart?.toISOString() ?? null,
    datetime_complete: t.datetimeComplete?.toISOString() ?? null,
  };
}

