/** Population-based training: the scheduler (a pruner), its explore step and the lineage reads. */
export { PopulationBasedTraining, pbtFromJson, type PopulationBasedTrainingOptions } from './pbt.js';
export { explore, clip, resample, type Mutation, type ParamChange, type ExploreSettings } from './explore.js';
export { policyOf, globalPolicy, lastPoint, offeredCheckpoint, clonedCheckpoint, memberOf, parentOf, describeChanges, pinnedCheckpointIds, type PolicyLine, type PerturbationPoint } from './lineage.js';
