/**
 * One study's live feed: what the dashboard pushes to every open page. It remembers, per trial, the
 * FrozenTrial object it last sent (storages hand out the same frozen object until the trial changes),
 * so after a change it sends only the trials whose object changed, as compact rows. Changes are
 * coalesced for `coalesceMs` so a burst of merges is one message.
 */
import type { FrozenTrial, Storage, StudyInfo } from '../storage/storage.js';
import { RowHeader, encodeTrial, type ParamInfo, type TrialRow } from '../visualization/data.js';

export interface Delta {
  version: number;
  params: ParamInfo[];
  /** Owner peer ids; rows carry an index into it. */
  owners: string[];
  rows: TrialRow[];
  removed: string[];
}

export interface Snapshot extends Delta {
  study: { studyId: string; studyName: string; directions: string[]; userAttrs: Record<string, unknown>; createdAt: number };
}

export class StudyFeed {
  private readonly index = new RowHeader();
  private readonly sent = new Map<string, FrozenTrial>();
  private readonly subscribers = new Set<(d: Delta) => void>();
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;
  /** The last snapshot as JSON and the version it shows: reloads and further tabs reuse it while nothing changed. */
  private cached: { version: number; json: Buffer; timer: NodeJS.Timeout } | null = null;

  constructor(
    private readonly storage: Storage & { onTrialsChanged?(l: (studyId: string) => void): () => void },
    readonly info: StudyInfo,
    private readonly coalesceMs = 30,
  ) {}

  // Rows are encoded when sent, not kept: at 100,000 trials a cache of rows cost more memory than
  // re-encoding a snapshot costs time.
  private row(t: FrozenTrial): TrialRow {
    return encodeTrial(t, this.index);
  }

  /** Everything, for a page that just connected; also makes the feed current. */
  snapshot(): Snapshot {
    // Pages already open get whatever changed first, so no page misses a delta (with none open, the
    // changed rows are not encoded twice).
    const d = this.collect(this.subscribers.size > 0);
    if (d.rows.length || d.removed.length) for (const s of this.subscribers) s(d);
    const rows: TrialRow[] = [];
    for (const t of this.sent.values()) rows.push(this.row(t));
    return {
      study: {
        studyId: this.info.studyId,
        studyName: this.info.studyName,
        directions: [...this.info.directions],
        userAttrs: { ...this.info.userAttrs },
        createdAt: this.info.createdAt.getTime(),
      },
      version: this.storage.getVersion(this.info.studyId),
      params: [...this.index.params],
      owners: [...this.index.owners],
      rows,
      removed: [],
    };
  }

  /**
   * `snapshot()` as JSON, in UTF-8 bytes written to every page as they are, reused while the study's
   * version stays the same (at 10,000 trials encoding and serialising one takes ~150 ms here). The
   * copy is dropped after `keepMs` so an idle dashboard does not hold it (16 MB at 100,000 trials).
   */
  snapshotJson(keepMs = 30_000): Buffer {
    const version = this.storage.getVersion(this.info.studyId);
    if (this.cached && this.cached.version === version) return this.cached.json;
    this.dropCache();
    const snap = this.snapshot();
    const json = Buffer.from(JSON.stringify(snap));
    const timer = setTimeout(() => this.dropCache(), keepMs);
    timer.unref();
    this.cached = { version: snap.version, json, timer };
    return json;
  }

  private dropCache(): void {
    if (this.cached) clearTimeout(this.cached.timer);
    this.cached = null;
  }

  /** Trials changed since the last collect, and those gone (claimed WAITING trials). */
  private collect(encode = true): Delta {
    const trials = this.storage.getAllTrials(this.info.studyId);
    const rows: TrialRow[] = [];
    const seen = new Set<string>();
    for (const t of trials) {
      seen.add(t.trialId);
      if (this.sent.get(t.trialId) !== t) {
        this.sent.set(t.trialId, t);
        if (encode) rows.push(this.row(t));
      }
    }
    const removed: string[] = [];
    if (seen.size !== this.sent.size) {
      for (const id of this.sent.keys()) {
        if (!seen.has(id)) {
          removed.push(id);
          this.sent.delete(id);
        }
      }
    }
    return { version: this.storage.getVersion(this.info.studyId), params: [...this.index.params], owners: [...this.index.owners], rows, removed };
  }

  subscribe(fn: (d: Delta) => void): () => void {
    if (this.subscribers.size === 0) this.start();
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
      if (this.subscribers.size === 0) this.stop();
    };
  }

  private start(): void {
    if (!this.storage.onTrialsChanged) return;
    this.unsubscribe = this.storage.onTrialsChanged((id) => {
      if (id === this.info.studyId) this.schedule();
    });
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      let d: Delta;
      try {
        d = this.collect();
      } catch {
        return; // the study was deleted or the storage closed: the pages keep what they have
      }
      if (d.rows.length === 0 && d.removed.length === 0) return;
      for (const s of this.subscribers) s(d);
    }, this.coalesceMs);
  }

  /** For storages without onTrialsChanged (in-memory): the server polls this. */
  poll(): void {
    if (this.subscribers.size) this.schedule();
  }

  stop(): void {
    this.dropCache();
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
