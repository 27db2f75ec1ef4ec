/**
 * The storage contract: the checks every `Storage` runs on what it is asked to write, so that an
 * objective that works in memory works on a swarm and the other way round (Optuna runs one storage test
 * suite over every backend; test/storage/contract.test.ts does the same here).
 *
 * Each check throws a StorageError naming the problem before anything is written, so a refused write
 * never leaves a half-changed trial behind. The rules:
 * - names (study names, attr keys, parameter names): non-empty strings of at most
 *   `CONTRACT_LIMITS.nameLength` characters;
 * - directions: a non-empty array of "minimize" / "maximize";
 * - attr values: plain JSON data (null, booleans, finite numbers, strings, arrays, plain objects),
 *   nested at most `attrDepth` deep, whose JSON text is at most `attrBytes` bytes; `undefined` at the
 *   top stands for null. Dates, Maps, class instances, functions, NaN and Infinity are refused, since
 *   they would not come back the same from a replica or an export;
 * - a new trial's state: RUNNING or WAITING; a finishing state: COMPLETE, PRUNED or FAIL;
 * - intermediate values: a step that is a non-negative safe integer and a value that is any number
 *   (NaN and ±Infinity included: a diverging loss is NaN, and Optuna stores it so pruners can act);
 * - trial values: null, or one finite number per direction of the study; COMPLETE needs them;
 * - sizes: at most `paramsPerTrial` parameters and `intermediatePerTrial` reported steps per trial.
 *
 * These checks are pure and load nothing, so the in-memory entry point stays light.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import { StorageError, type StudyDirection, type TrialState } from './storage.js';

export const CONTRACT_LIMITS = {
  /** Study names, attr keys and parameter names. */
  nameLength: 256,
  /** An attr value's JSON text, in UTF-8 bytes. */
  attrBytes: 64 * 1024,
  /** Nesting of arrays/objects in an attr value (a top-level array is depth 1). */
  attrDepth: 10,
  paramsPerTrial: 1_000,
  intermediatePerTrial: 100_000,
} as const;

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function show(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint' || v === undefined) return String(v);
  try {
    const s = JSON.stringify(v);
    return s === undefined ? typeof v : s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return typeof v;
  }
}

export function checkName(what: string, name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0 || name.length > CONTRACT_LIMITS.nameLength) {
    throw new StorageError(`${what} must be a non-empty string of at most ${CONTRACT_LIMITS.nameLength} characters, got ${show(name)}`);
  }
}

export function checkStudyName(name: unknown): asserts name is string {
  checkName('studyName', name);
}

export function checkDirections(directions: unknown): asserts directions is StudyDirection[] {
  if (!Array.isArray(directions) || directions.length === 0 || !directions.every((d) => d === 'minimize' || d === 'maximize')) {
    throw new StorageError(`directions must be a non-empty array of "minimize" or "maximize", got ${show(directions)}`);
  }
}

/** Why `value` is not plain JSON data, or null if it is. */
function notPlain(value: unknown, depth: number): string | null {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  if (typeof value === 'number') return Number.isFinite(value) ? null : `${value} is not a finite number`;
  if (typeof value !== 'object') return `a ${typeof value} is not data`;
  if (depth >= CONTRACT_LIMITS.attrDepth) return `it is nested deeper than ${CONTRACT_LIMITS.attrDepth} levels`;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) return 'an array has holes';
      const why = notPlain(value[i], depth + 1);
      if (why) return why;
    }
    return null;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    return `a ${(value as object).constructor?.name ?? 'non-plain object'} is not a plain object`;
  }
  if (Object.getOwnPropertySymbols(value).length > 0) return 'an object has symbol keys';
  for (const [k, v] of Object.entries(value)) {
    if (FORBIDDEN_KEYS.has(k)) return `the key "${k}" is not allowed`;
    const why = v === undefined ? `the key "${k}" is undefined` : notPlain(v, depth + 1);
    if (why) return why;
  }
  return null;
}

/** Checks an attr (study or trial, user or system) before it is written. */
export function checkAttr(key: unknown, value: unknown): void {
  checkName('attr key', key);
  const v = value ?? null;
  const why = notPlain(v, 0);
  const rule = `must be plain JSON data (null, booleans, finite numbers, strings, arrays, plain objects) of at most ${CONTRACT_LIMITS.attrBytes} bytes`;
  if (why) throw new StorageError(`attr "${key}" ${rule}: ${why}`);
  const bytes = utf8Length(JSON.stringify(v));
  if (bytes > CONTRACT_LIMITS.attrBytes) throw new StorageError(`attr "${key}" ${rule}: it takes ${bytes} bytes`);
}

/** A deep copy of a checked attr value (so later changes to the caller's object do not leak in). */
export function copyAttr(value: unknown): unknown {
  return value === undefined || value === null ? null : JSON.parse(JSON.stringify(value));
}

/** Checks every attr of a record. */
export function checkAttrs(attrs: Readonly<Record<string, unknown>> | undefined): void {
  if (attrs === undefined) return;
  if (attrs === null || typeof attrs !== 'object' || Array.isArray(attrs)) throw new StorageError(`attrs must be an object, got ${show(attrs)}`);
  for (const [k, v] of Object.entries(attrs)) checkAttr(k, v);
}

export function checkNewTrialState(state: unknown): asserts state is 'RUNNING' | 'WAITING' {
  if (state !== 'RUNNING' && state !== 'WAITING') throw new StorageError(`a new trial is RUNNING or WAITING, not ${show(state)}`);
}

/** Params and their distributions, before `setTrialParams` (or a template) writes them. */
export function checkParams(
  params: Readonly<Record<string, ParamValue>> | undefined,
  distributions: Readonly<Record<string, Distribution>> | undefined,
  existing: Readonly<Record<string, ParamValue>> = {},
): void {
  const p = params ?? {};
  const d = distributions ?? {};
  if (typeof p !== 'object' || p === null || typeof d !== 'object' || d === null) throw new StorageError('params and distributions must be objects');
  let added = 0;
  for (const [name, value] of Object.entries(p)) {
    checkName('parameter name', name);
    const ok = value === null || typeof value === 'string' || typeof value === 'boolean' || (typeof value === 'number' && Number.isFinite(value));
    if (!ok) throw new StorageError(`parameter "${name}" must be a finite number, a string, a boolean or null, got ${show(value)}`);
    if (!d[name] || typeof d[name] !== 'object') throw new StorageError(`parameter "${name}" has no distribution`);
    if (!Object.prototype.hasOwnProperty.call(existing, name)) added++;
  }
  const total = Object.keys(existing).length + added;
  if (total > CONTRACT_LIMITS.paramsPerTrial) {
    throw new StorageError(`a trial holds at most ${CONTRACT_LIMITS.paramsPerTrial} parameters, this write would make ${total}`);
  }
}

/** An intermediate value: any number (NaN and ±Infinity included, as Optuna) at a non-negative integer step. */
export function checkIntermediate(step: unknown, value: unknown, stepsSoFar = 0): void {
  if (typeof step !== 'number' || !Number.isSafeInteger(step) || step < 0) {
    throw new StorageError(`step must be a non-negative integer, got ${show(step)}`);
  }
  if (typeof value !== 'number') throw new StorageError(`intermediate value must be a number, got ${show(value)}`);
  if (stepsSoFar >= CONTRACT_LIMITS.intermediatePerTrial) {
    throw new StorageError(`a trial holds at most ${CONTRACT_LIMITS.intermediatePerTrial} intermediate values`);
  }
}

/** A finishing state and its values, for a study with `nDirections` directions. */
export function checkFinish(state: unknown, values: unknown, nDirections: number): asserts state is 'COMPLETE' | 'PRUNED' | 'FAIL' {
  if (state !== 'COMPLETE' && state !== 'PRUNED' && state !== 'FAIL') {
    throw new StorageError(`finishTrial state must be COMPLETE, PRUNED or FAIL, got ${show(state)}`);
  }
  if (values === null || values === undefined) {
    if (state === 'COMPLETE') throw new StorageError('a COMPLETE trial needs values');
    return;
  }
  if (!Array.isArray(values) || !values.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new StorageError(`trial values must be finite numbers, got ${show(values)}`);
  }
  if (values.length !== nDirections) {
    throw new StorageError(`trial values must be one number per direction (${nDirections}), got ${values.length}: ${show(values)}`);
  }
}

/** The states `getAllTrials` can filter on. */
export function checkStates(states: unknown): asserts states is readonly TrialState[] | undefined {
  if (states === undefined) return;
  const valid = ['WAITING', 'RUNNING', 'COMPLETE', 'PRUNED', 'FAIL'];
  if (!Array.isArray(states) || !states.every((s) => valid.includes(s as string))) {
    throw new StorageError(`states must be an array of ${valid.join(', ')}, got ${show(states)}`);
  }
}

function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}
