/** peertune's public API: Optuna's shape, in TypeScript. */
export { createStudy, loadStudy, Study } from './study.js';
export { PeertuneError, OptionError, StudyUsageError, checkOptions, rules as optionRules } from './errors.js';
export type { OptionRule } from './errors.js';
export type { CreateStudyOptions, OptimizeOptions, Objective, ObjectiveResult, Callback } from './study.js';
export { Trial, TrialPruned } from './trial.js';
export * from './distributions.js';
export * from './samplers/index.js';
export * from './pruners/index.js';
export { InMemoryStorage } from './storage/memory.js';
export {
  TRIAL_STATES,
  isFinished,
  StorageError,
  DuplicatedStudyError,
  StudyNotFoundError,
  AmbiguousStudyError,
} from './storage/storage.js';
export type { Storage, FrozenTrial, PeerInfo, StudyInfo, StudyDirection, TrialState, TrialTemplate } from './storage/storage.js';
export { paretoFront, dominates, nonDominatedRanks } from './multi-objective.js';
export { hypervolume, hypervolumeContributions, greedyHypervolumeOrder, optunaReferencePoint, HypervolumeError } from './hypervolume.js';
export { setVerbosity, getVerbosity, setLogSink, logger } from './logging.js';
export type { LogLevel } from './logging.js';
export { Rng } from './rng.js';
export { MaxTrialsCallback } from './callbacks.js';
export { trialsToRows, toCsv, toJson, parseCsv, parseTrialsJson, trialToJson, ExportFormatError } from './export.js';
export type { Row, Cell, TrialJson } from './export.js';

// The replicated storage pulls in libp2p, Automerge and level (hundreds of milliseconds to import), so
// this entry only names its types and loads it when a peer storage is opened; `peertune/peer` exports
// it directly.
import type { PeerStorage, PeerStorageOptions } from './storage/replicated/index.js';
export type { PeerStorage, PeerStorageOptions };

/** Opens a replica of studies shared with peers (see `peertune/peer`); loads the network stack on first call. */
export async function openPeerStorage(opts: PeerStorageOptions): Promise<PeerStorage> {
  const peer = await import('./storage/replicated/index.js');
  return peer.openPeerStorage(opts);
}
export type { CheckpointConfig } from './checkpoints/keep.js';
export type { Checkpoint, CheckpointRef } from './checkpoints/manager.js';
export { PopulationBasedTraining, policyOf, globalPolicy } from './pbt/index.js';
export type { PopulationBasedTrainingOptions, Mutation, ParamChange, PolicyLine } from './pbt/index.js';
export * from './visualization/index.js';
export * from './importance/index.js';
