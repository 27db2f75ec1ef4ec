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
export { openPeerStorage, PeerStorage } from './storage/replicated/index.js';
export type { PeerStorageOptions } from './storage/replicated/index.js';
