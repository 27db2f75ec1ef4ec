/**
 * Which checkpoints of a trial stay: Ray Tune's rules (CheckpointConfig num_to_keep,
 * checkpoint_score_attribute, checkpoint_score_order), with two mends. The latest is always kept (a
 * retry resumes from it); the best `numToKeep` by score are kept; a missing or NaN score ranks worst
 * (Ray appends a report without the key at the best end); ties go to the newer. Anything pinned (a
 * running retry or a PBT clone resumes from it) is kept whatever its rank. Pure: every peer that holds
 * the same references decides the same.
 */
import { checkOptions, rules } from '../errors.js';

export interface CheckpointConfig {
  /** How many to keep besides the latest; undefined keeps all. At least 1. */
  numToKeep?: number;
  /** The metric (a key of the checkpoint's metrics) that ranks checkpoints; undefined ranks by age. */
  scoreAttribute?: string;
  /** 'max' (default, as in Ray) or 'min'. */
  scoreOrder?: 'max' | 'min';
  /** Other peers that must confirm a copy of each checkpoint (default 1). */
  minReplicas?: number;
}

export interface RankedCheckpoint {
  id: string;
  /** Creation order within the trial (higher is newer). */
  seq: number;
  metrics?: Record<string, unknown> | undefined;
}

export function checkCheckpointConfig(c: CheckpointConfig | undefined): Required<Pick<CheckpointConfig, 'scoreOrder' | 'minReplicas'>> & CheckpointConfig {
  const cfg = c ?? {};
  checkOptions('checkpointConfig', cfg as Record<string, unknown>, {
    numToKeep: rules.integer(1),
    scoreAttribute: { valid: 'a metric name (1 to 256 characters)', test: (v) => typeof v === 'string' && v.length > 0 && v.length <= 256 },
    scoreOrder: rules.oneOf(['max', 'min']),
    minReplicas: rules.integer(0, 16),
  }, { rejectUnknown: true });
  return { ...cfg, scoreOrder: cfg.scoreOrder ?? 'max', minReplicas: cfg.minReplicas ?? 1 };
}

function scoreOf(c: RankedCheckpoint, attr: string): number | null {
  const v = c.metrics?.[attr];
  return typeof v === 'number' && !Number.isNaN(v) ? v : null;
}

/**
 * Sorts best first: by score in the configured order (no score last), then newer first. Without a
 * score attribute, newer first.
 */
export function rankCheckpoints<T extends RankedCheckpoint>(cps: readonly T[], cfg: CheckpointConfig = {}): T[] {
  const attr = cfg.scoreAttribute;
  const sign = (cfg.scoreOrder ?? 'max') === 'max' ? -1 : 1;
  return [...cps].sort((a, b) => {
    if (attr !== undefined) {
      const sa = scoreOf(a, attr);
      const sb = scoreOf(b, attr);
      if (sa === null && sb !== null) return 1;
      if (sb === null && sa !== null) return -1;
      if (sa !== null && sb !== null && sa !== sb) return sign * (sa - sb);
    }
    return b.seq - a.seq;
  });
}

/** The ids to keep: the latest, the best `numToKeep`, and every pinned id that is present. */
export function selectKept(cps: readonly RankedCheckpoint[], cfg: CheckpointConfig = {}, pinned: ReadonlySet<string> = new Set()): Set<string> {
  if (cps.length === 0) return new Set();
  if (cfg.numToKeep === undefined) return new Set(cps.map((c) => c.id));
  const kept = new Set<string>();
  let latest = cps[0]!;
  for (const c of cps) if (c.seq > latest.seq) latest = c;
  kept.add(latest.id);
  for (const c of rankCheckpoints(cps, cfg).slice(0, cfg.numToKeep)) kept.add(c.id);
  for (const c of cps) if (pinned.has(c.id)) kept.add(c.id);
  return kept;
}

/** The best checkpoint by a metric (Ray's get_best_checkpoint), or null when none has that metric. */
export function bestCheckpoint<T extends RankedCheckpoint>(cps: readonly T[], metric: string, order: 'max' | 'min' = 'max'): T | null {
  const ranked = rankCheckpoints(cps, { scoreAttribute: metric, scoreOrder: order });
  const first = ranked[0];
  return first && scoreOf(first, metric) !== null ? first : null;
}
