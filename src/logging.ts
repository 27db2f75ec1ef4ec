/**
 * Logging in Optuna's shape, so users can grep the same lines:
 * `[I 2026-11-22 06:10:00,123] Trial 3 finished with value: 0.12 and parameters: {...}. Best is trial 1 with value: 0.03.`
 * One process-wide verbosity, like optuna.logging.set_verbosity; output goes to stderr by default.
 */
import { OptionError } from './errors.js';

export type LogLevel = 'debug' | 'info' | 'warning' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warning: 30, error: 40, silent: 100 };
const LETTER: Record<Exclude<LogLevel, 'silent'>, string> = { debug: 'D', info: 'I', warning: 'W', error: 'E' };

type Sink = (line: string) => void;

let level: LogLevel = (process.env['PEERTUNE_LOG_LEVEL'] as LogLevel | undefined) ?? 'info';
if (!(level in ORDER)) level = 'info';
let sink: Sink = (line) => process.stderr.write(line + '\n');

export function setVerbosity(l: LogLevel): void {
  if (!(l in ORDER)) throw new OptionError(`unknown log level "${l}"; use one of ${Object.keys(ORDER).join(', ')}`, 'level', l);
  level = l;
}

export function getVerbosity(): LogLevel {
  return level;
}

/** Redirects log lines (tests, the CLI's progress bar). Returns the previous sink. */
export function setLogSink(s: Sink): Sink {
  const prev = sink;
  sink = s;
  return prev;
}

function stamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())},${p(d.getMilliseconds(), 3)}`;
}

function log(l: Exclude<LogLevel, 'silent'>, message: string): void {
  if (ORDER[l] < ORDER[level]) return;
  sink(`[${LETTER[l]} ${stamp(new Date())}] ${message}`);
}

/** Whether a line at this level would be written (to skip building a costly message nobody sees). */
export function logsAt(l: Exclude<LogLevel, 'silent'>): boolean {
  return ORDER[l] >= ORDER[level];
}

export const logger = {
  debug: (m: string) => log('debug', m),
  info: (m: string) => log('info', m),
  warn: (m: string) => log('warning', m),
  error: (m: string) => log('error', m),
};

/** Parameters as a log line shows them: `{'x': 0.5, 'kind': 'relu'}` (Python-like, as Optuna prints). */
export function formatParams(params: Readonly<Record<string, unknown>>): string {
  const parts = Object.entries(params).map(([k, v]) => `'${k}': ${formatValue(v)}`);
  return `{${parts.join(', ')}}`;
}

function formatValue(v: unknown): string {
  if (typeof v === 'string') return `'${v}'`;
  if (v === null) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return String(v);
}
