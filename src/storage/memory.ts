/**
 * In-memory storage: the default for `createStudy()` with no options, like Optuna's. One process,
 * nothing on disk, numbers assigned in creation order. Every write goes through the storage contract
 * (contract.ts), the same checks PeerStorage runs, and attr values are stored as copies.
 */
import type { Distribution, ParamValue } from '../distributions.js';
import {
  checkAttr,
  checkAttrs,
  checkDirections,
  checkFinish,
  checkIntermediate,
  checkNewTrialState,
  checkParams,
  checkStates,
  checkStudyName,
  copyAttr,
} from './contract.js';
import {
  DuplicatedStudyError,
  StorageError,
  StudyNotFoundError,
  frozenTrial,
  isFinished,
  type FrozenTrial,
  type Storage,
  type StudyDirection,
  type StudyInfo,
  type TrialState,
  type TrialTemplate,
} from './storage.js';

interface MutableTrial {
  trialId: string;
  number: number;
  owner: string;
  state: TrialState;
  values: number[] | null;
  params: Record<string, ParamValue>;
  distributions: Record<string, Distribution>;
  intermediateValues: Map<number, number>;
  userAttrs: Record<string, unknown>;
  systemAttrs: Record<string, unknown>;
  datetimeStart: Date | null;
  datetimeComplete: Date | null;
}

interface StudyRecord {
  info: StudyInfo;
  trials: MutableTrial[];
  byId: Map<string, MutableTrial>;
  version: number;
  frozen: Map<string, FrozenTrial>;
  all: readonly FrozenTrial[] | null;
  seq: number;
}

export class InMemoryStorage implements Storage {
  readonly ownerId = 'local';
  private studies = new Map<string, StudyRecord>();
  private nextStudy = 0;

  async createStudy(opts: { studyName: string; directions: StudyDirection[]; userAttrs?: Record<string, unknown> }): Promise<StudyInfo> {
    checkStudyName(opts.studyName);
    checkDirections(opts.directions);
    checkAttrs(opts.userAttrs);
    for (const s of this.studies.values()) {
      if (s.info.studyName === opts.studyName) throw new DuplicatedStudyError(`a study named "${opts.studyName}" already exists`);
    }
    const info: StudyInfo = {
      studyId: `study-${this.nextStudy++}`,
      studyName: opts.studyName,
      directions: [...opts.directions],
      userAttrs: copyAttrs(opts.userAttrs),
      systemAttrs: {},
      createdAt: new Date(),
    };
    this.studies.set(info.studyId, { info, trials: [], byId: new Map(), version: 0, frozen: new Map(), all: null, seq: 0 });
    return info;
  }

  getStudy(studyName: string): StudyInfo | null {
    for (const s of this.studies.values()) if (s.info.studyName === studyName) return s.info;
    return null;
  }

  listStudies(): StudyInfo[] {
    return [...this.studies.values()].map((s) => s.info);
  }

  async deleteStudy(studyId: string): Promise<void> {
    this.study(studyId);
    this.studies.delete(studyId);
  }

  setStudyUserAttr(studyId: string, key: string, value: unknown): void {
    const s = this.study(studyId);
    checkAttr(key, value);
    s.info = { ...s.info, userAttrs: { ...s.info.userAttrs, [key]: copyAttr(value) } };
  }

  setStudySystemAttr(studyId: string, key: string, value: unknown): void {
    const s = this.study(studyId);
    checkAttr(key, value);
    s.info = { ...s.info, systemAttrs: { ...s.info.systemAttrs, [key]: copyAttr(value) } };
  }

  createTrial(studyId: string, template: TrialTemplate = {}): FrozenTrial {
    const s = this.study(studyId);
    const state = template.state ?? 'RUNNING';
    checkNewTrialState(state);
    checkParams(template.params, template.distributions ?? {});
    checkAttrs(template.userAttrs);
    checkAttrs(template.systemAttrs);
    const seq = s.seq++;
    const t: MutableTrial = {
      trialId: `${this.ownerId}:${seq}`,
      number: s.trials.length,
      owner: this.ownerId,
      state,
      values: null,
      params: { ...(template.params ?? {}) },
      distributions: { ...(template.distributions ?? {}) },
      intermediateValues: new Map(),
      userAttrs: copyAttrs(template.userAttrs),
      systemAttrs: copyAttrs(template.systemAttrs),
      datetimeStart: state === 'RUNNING' ? new Date() : null,
      datetimeComplete: null,
    };
    s.trials.push(t);
    s.byId.set(t.trialId, t);
    this.touch(s, t);
    return this.frozen(s, t);
  }

  claimWaitingTrial(studyId: string): FrozenTrial | null {
    const s = this.study(studyId);
    const t = s.trials.find((x) => x.state === 'WAITING');
    if (!t) return null;
    t.state = 'RUNNING';
    t.datetimeStart = new Date();
    this.touch(s, t);
    return this.frozen(s, t);
  }

  setTrialParams(studyId: string, trialId: string, params: Record<string, ParamValue>, distributions: Record<string, Distribution>): void {
    const { s, t } = this.running(studyId, trialId);
    checkParams(params, distributions, t.params);
    Object.assign(t.params, params);
    Object.assign(t.distributions, distributions);
    this.touch(s, t);
  }

  setTrialIntermediateValue(studyId: string, trialId: string, step: number, value: number): void {
    checkIntermediate(step, value);
    const { s, t } = this.running(studyId, trialId);
    if (!t.intermediateValues.has(step)) checkIntermediate(step, value, t.intermediateValues.size);
    t.intermediateValues.set(step, value);
    this.touch(s, t);
  }

  setTrialUserAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    checkAttr(key, value);
    const { s, t } = this.trial(studyId, trialId);
    t.userAttrs[key] = copyAttr(value);
    this.touch(s, t);
  }

  setTrialSystemAttr(studyId: string, trialId: string, key: string, value: unknown): void {
    checkAttr(key, value);
    const { s, t } = this.trial(studyId, trialId);
    t.systemAttrs[key] = copyAttr(value);
    this.touch(s, t);
  }

  async finishTrial(studyId: string, trialId: string, state: 'COMPLETE' | 'PRUNED' | 'FAIL', values: number[] | null = null): Promise<void> {
    const { s, t } = this.trial(studyId, trialId);
    checkFinish(state, values, s.info.directions.length);
    if (isFinished(t.state)) throw new StorageError(`trial ${t.number} is already finished (${t.state}); a finished state is final`);
    t.state = state;
    t.values = values ? [...values] : null;
    t.datetimeComplete = new Date();
    if (!t.datetimeStart) t.datetimeStart = t.datetimeComplete;
    this.touch(s, t);
  }

  getTrial(studyId: string, trialId: string): FrozenTrial {
    const { s, t } = this.trial(studyId, trialId);
    return this.frozen(s, t);
  }

  getAllTrials(studyId: string, states?: readonly TrialState[]): readonly FrozenTrial[] {
    checkStates(states);
    const s = this.study(studyId);
    if (!s.all) s.all = Object.freeze(s.trials.map((t) => this.frozen(s, t)));
    return states ? s.all.filter((t) => states.includes(t.state)) : s.all;
  }

  getVersion(studyId: string): number {
    return this.study(studyId).version;
  }

  async flush(): Promise<void> {}
  async close(): Promise<void> {}

  private study(studyId: string): StudyRecord {
    const s = this.studies.get(studyId);
    if (!s) throw new StudyNotFoundError(`no study with id "${studyId}"`);
    return s;
  }

  private trial(studyId: string, trialId: string): { s: StudyRecord; t: MutableTrial } {
    const s = this.study(studyId);
    const t = s.byId.get(trialId);
    if (!t) throw new StorageError(`no trial "${trialId}" in study "${s.info.studyName}"`);
    return { s, t };
  }

  private running(studyId: string, trialId: string): { s: StudyRecord; t: MutableTrial } {
    const r = this.trial(studyId, trialId);
    if (r.t.state !== 'RUNNING') throw new StorageError(`trial ${r.t.number} is ${r.t.state}; only a RUNNING trial can be changed`);
    return r;
  }

  private touch(s: StudyRecord, t: MutableTrial): void {
    s.version++;
    s.frozen.delete(t.trialId);
    s.all = null;
  }

  private frozen(s: StudyRecord, t: MutableTrial): FrozenTrial {
    let f = s.frozen.get(t.trialId);
    if (!f) {
      f = frozenTrial(t);
      s.frozen.set(t.trialId, f);
    }
    return f;
  }
}

function copyAttrs(attrs: Readonly<Record<string, unknown>> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(attrs ?? {})) out[k] = copyAttr(v);
  return out;
}
