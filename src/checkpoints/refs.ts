/**
 * Checkpoint references as the replicated document holds them: a trial's system attr `checkpoints`, a
 * list of small records (content hash, size, kind, step, metrics, holders), never the bytes. This
 * module only reads them (no file system, no network), so FrozenTrial can carry them cheaply.
 */

const HASH_RE = /^[0-9a-f]{64}$/;
const isBlobHash = (h: unknown): h is string => typeof h === 'string' && HASH_RE.test(h);

export const CHECKPOINTS_ATTR = 'checkpoints';

/** What the document holds about one checkpoint (a system attr entry; JSON-safe). */
export interface CheckpointRef {
  /** sha256 of the blob (for a directory: of its manifest). */
  hash: string;
  /** Total bytes (for a directory: its files). */
  size: number;
  kind: 'file' | 'dir';
  /** For a directory: the manifest blob's own size. */
  manifestSize?: number;
  /** `<trialId>#<seq>`: unique across the swarm. */
  id: string;
  trialId: string;
  seq: number;
  step: number | null;
  metrics: Record<string, number | string | boolean | null>;
  createdAt: number;
  /** Peers that hold a verified copy (the owner first). */
  holders: string[];
  /** Copies on other peers the owner asks for (the study's checkpointConfig.minReplicas when saved). */
  replicas?: number;
}

/** The checkpoint references of a trial, checked (a record from another peer may carry anything). */
export function checkpointRefs(t: { readonly trialId: string; readonly systemAttrs: Readonly<Record<string, unknown>> }): CheckpointRef[] {
  const raw = t.systemAttrs[CHECKPOINTS_ATTR];
  if (!Array.isArray(raw)) return [];
  const out: CheckpointRef[] = [];
  for (const r of raw as unknown[]) {
    const c = r as Partial<CheckpointRef> | null;
    if (!c || typeof c !== 'object' || !isBlobHash(c.hash) || (c.kind !== 'file' && c.kind !== 'dir')) continue;
    if (!Number.isSafeInteger(c.size) || (c.size as number) < 0 || !Number.isSafeInteger(c.seq)) continue;
    out.push({
      id: `${t.trialId}#${c.seq}`,
      trialId: t.trialId,
      hash: c.hash,
      size: c.size as number,
      kind: c.kind,
      seq: c.seq as number,
      step: Number.isSafeInteger(c.step) ? (c.step as number) : null,
      metrics: c.metrics && typeof c.metrics === 'object' && !Array.isArray(c.metrics) ? (c.metrics as CheckpointRef['metrics']) : {},
      createdAt: typeof c.createdAt === 'number' ? c.createdAt : 0,
      ...(c.kind === 'dir' && Number.isSafeInteger(c.manifestSize) ? { manifestSize: c.manifestSize as number } : {}),
      holders: Array.isArray(c.holders) ? c.holders.filter((h): h is string => typeof h === 'string').slice(0, 32) : [],
      ...(Number.isSafeInteger(c.replicas) && (c.replicas as number) >= 0 && (c.replicas as number) <= 16 ? { replicas: c.replicas as number } : {}),
    });
  }
  return out;
}

