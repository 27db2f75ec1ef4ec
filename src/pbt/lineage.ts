/**
 * What PBT writes into trials' system attrs, and the reads built on it: a member's lineage, the
 * checkpoint a member offers for cloning, the checkpoints keep-N must not drop, and Ray's policy lines.
 * Everything here is a pure function of trial records, so every peer holding the same replica reads the
 * same lineage. The attrs (all written by the trial's owner):
 *
 * - `pbtLast` `{ time, step, score?, prev? }`: the member's last perturbation point (score absent on a new
 *   continuation until it reaches its own first point).
 * - On a continuation (the NEW trial a perturbation creates, on the exploited member's peer): `pbtMember` (the population slot: the
 *   trial id of the member's first trial), `pbtParent` (the cloned top member's trial id),
 *   `pbtCheckpoint` `{ trialId, seq, step }` (the cloned checkpoint), `pbtStartStep`, `pbtReplaces` (the
 *   exploited trial), `pbtChanges` `{ name: { from, to, how } }`, `pbtTimeBase` (the member's time at
 *   the start), `fixedParams` (the explored values).
 * - On an exploited trial (ends PRUNED): `pbtExploited` `{ step, time, parent }`
 *   and `pbtReason` (one line of text).
 * - On a member stopped at a sync point (synch mode; ends PRUNED): `pbtStopped` `{ sync, step }` and
 *   `pbtReason`; its continuation from itself has `pbtParent` equal to `pbtReplaces` and no changes.
 * - When a continuation's chosen checkpoint was gone and it started from a newer one of the same member
 *   (checkpoints/manager.ts): `pbtChosenCheckpoint`, with `pbtCheckpoint` / `pbtStartStep` rewritten.
 */
import type { ParamValue } from '../distributions.js';
import { checkpointRefs, type CheckpointRef } from '../checkpoints/refs.js';
import type { FrozenTrial } from '../storage/storage.js';
import type { ParamChange } from './explore.js';

export interface PerturbationPoint {
  time: number;
  step: number;
  /** The step of the member's point before this one. */
  prev?: number;
  /** The member's score there (higher is better; -Infinity for a NaN report); absent before its first point. */
  score?: number;
}

type TrialLike = Pick<FrozenTrial, 'trialId' | 'systemAttrs' | 'params'> & { readonly checkpoints?: readonly CheckpointRef[] };

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function lastPoint(t: TrialLike): PerturbationPoint | null {
  const p = t.systemAttrs['pbtLast'] as Partial<PerturbationPoint> | undefined;
  if (!p || typeof p !== 'object') return null;
  const time = num(p.time);
  const step = num(p.step);
  if (time === null || step === null) return null;
  // Stored as a finite number, or null for a NaN report (attrs are JSON): null ranks worst.
  const raw = (p as { score?: unknown }).score;
  const prev = num(p.prev);
  const out: PerturbationPoint = prev === null ? { time, step } : { time, step, prev };
  if (raw === null) out.score = -Infinity;
  else if (typeof raw === 'number' && Number.isFinite(raw)) out.score = raw;
  return out;
}

/** The trial this one continues from, if any: the cloned member (PBT) or the retried trial. */
export function parentOf(t: TrialLike): string | null {
  return str(t.systemAttrs['pbtParent']) ?? str(t.systemAttrs['retryOf']);
}

/** The cloned checkpoint a continuation starts from: `{ trialId, seq, step }`, or null. */
export function clonedCheckpoint(t: TrialLike): { trialId: string; seq: number; step: number | null } | null {
  const c = t.systemAttrs['pbtCheckpoint'] as { trialId?: unknown; seq?: unknown; step?: unknown } | undefined;
  if (!c || typeof c !== 'object' || typeof c.trialId !== 'string' || !Number.isSafeInteger(c.seq)) return null;
  return { trialId: c.trialId, seq: c.seq as number, step: Number.isSafeInteger(c.step) ? (c.step as number) : null };
}

/** The population slot of a trial: its `pbtMember`, else (a retry) the slot of the trial it retries, else itself. */
export function memberOf(t: TrialLike, byId: ReadonlyMap<string, TrialLike>): string {
  let cur: TrialLike | undefined = t;
  for (let i = 0; cur && i < 64; i++) {
    const m = str(cur.systemAttrs['pbtMember']);
    if (m) return m;
    const r = str(cur.systemAttrs['retryOf']);
    if (!r) return cur.trialId;
    cur = byId.get(r) ?? { trialId: r, systemAttrs: {}, params: {} };
  }
  return t.trialId;
}

/**
 * The checkpoint a member offers to be cloned: the one it recorded at its last perturbation point (the
 * latest with a step at or before that point's step), as in Ray. Null without a point or a checkpoint.
 */
export function offeredCheckpoint(t: TrialLike, at: 'last' | 'previous' = 'last'): CheckpointRef | null {
  const p = lastPoint(t);
  const step = at === 'last' ? p?.step : p?.prev;
  if (step === undefined) return null;
  let best: CheckpointRef | null = null;
  for (const r of t.checkpoints ?? checkpointRefs(t)) {
    if (r.step === null || r.step > step) continue;
    if (!best || r.step > best.step! || (r.step === best.step && r.seq > best.seq)) best = r;
  }
  return best;
}

/**
 * Checkpoint ids (`<trialId>#<seq>`) that keep-N must keep: those a WAITING or RUNNING continuation
 * starts from, and those a RUNNING member offers for cloning at its last two perturbation points (a
 * bottom member on another peer may be cloning one right now: Ray's #8441, #9036).
 */
export function pinnedCheckpointIds(trials: Iterable<FrozenTrial>): Set<string> {
  const out = new Set<string>();
  for (const t of trials) {
    if (t.state !== 'RUNNING' && t.state !== 'WAITING') continue;
    const c = clonedCheckpoint(t);
    if (c) out.add(`${c.trialId}#${c.seq}`);
    if (t.state !== 'RUNNING') continue;
    for (const at of ['last', 'previous'] as const) {
      const offered = offeredCheckpoint(t, at);
      if (offered) out.add(offered.id);
    }
  }
  return out;
}

export function changesOf(t: TrialLike): Record<string, ParamChange> {
  const c = t.systemAttrs['pbtChanges'];
  return c && typeof c === 'object' && !Array.isArray(c) ? (c as Record<string, ParamChange>) : {};
}

/** `lr 0.01→0.012 (*1.2), momentum 0.9→0.99 (choice+1)`: a continuation's perturbation in one line. */
export function describeChanges(t: TrialLike): string {
  const fmt = (v: unknown) => (typeof v === 'number' ? String(Number(v.toPrecision(4))) : JSON.stringify(v));
  return Object.entries(changesOf(t))
    .map(([k, c]) => `${k} ${fmt(c.from)}→${fmt(c.to)} (${c.how})`)
    .join(', ');
}

/**
 * One line of Ray's `pbt_policy_<trial>.txt`: [exploited trial, cloned trial, exploited trial's step,
 * cloned checkpoint's step, cloned config, new config]. Trial ids here are peertune's (shared by every
 * replica); `number` fields are this replica's display numbers.
 */
export interface PolicyLine {
  trial: string;
  clonedTrial: string;
  step: number | null;
  clonedStep: number | null;
  clonedConfig: Record<string, ParamValue>;
  newConfig: Record<string, ParamValue>;
  /** The continuation this perturbation created (the trial whose params are newConfig). */
  continuation: string;
}

function policyLine(t: FrozenTrial, byId: ReadonlyMap<string, FrozenTrial>): PolicyLine | null {
  const parent = str(t.systemAttrs['pbtParent']);
  const replaced = str(t.systemAttrs['pbtReplaces']);
  if (!parent || parent === replaced) return null; // none, or a synch member continuing from itself
  const old = replaced ? byId.get(replaced) : undefined;
  const ex = old?.systemAttrs['pbtExploited'] as { step?: unknown } | undefined;
  const fixed = (t.systemAttrs['fixedParams'] as Record<string, ParamValue> | undefined) ?? t.params;
  return {
    trial: replaced ?? '',
    clonedTrial: parent,
    step: num(ex?.step),
    clonedStep: clonedCheckpoint(t)?.step ?? null,
    clonedConfig: { ...(byId.get(parent)?.params ?? {}) },
    newConfig: { ...fixed },
    continuation: t.trialId,
  };
}

/**
 * The schedule that produced a trial's weights (Ray's pbt_policy_<trial>.txt): the policy of the trial
 * it cloned, then the perturbation that created it. Retries add nothing (same params, same weights).
 */
export function policyOf(trialId: string, trials: readonly FrozenTrial[]): PolicyLine[] {
  const byId = new Map(trials.map((t) => [t.trialId, t] as const));
  const lines: PolicyLine[] = [];
  let cur = byId.get(trialId);
  for (let i = 0; cur && i < 10_000; i++) {
    const line = policyLine(cur, byId);
    if (line) lines.push(line);
    cur = byId.get(parentOf(cur) ?? '');
  }
  return lines.reverse();
}

/** Every perturbation of the study in trial order (Ray's pbt_global.txt). */
export function globalPolicy(trials: readonly FrozenTrial[]): PolicyLine[] {
  const byId = new Map(trials.map((t) => [t.trialId, t] as const));
  return trials.map((t) => policyLine(t, byId)).filter((l): l is PolicyLine => l !== null);
}

/** Whether any trial of the study carries PBT attrs (export and the trials table add lineage columns then). */
export function hasLineage(trials: readonly TrialLike[]): boolean {
  return trials.some((t) => t.systemAttrs['pbtLast'] !== undefined || t.systemAttrs['pbtParent'] !== undefined);
}
