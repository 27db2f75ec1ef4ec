/** All pruners, and the one a study gets when none is given. */
import type { Pruner } from './base.js';
import { NopPruner } from './nop.js';

export type { Pruner } from './base.js';
export { NopPruner } from './nop.js';

/** Optuna's default is MedianPruner; used when createStudy() gets no pruner. */
export function defaultPruner(): Pruner {
  return new NopPruner();
}
