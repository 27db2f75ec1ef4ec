/**
 * MedianPruner: Optuna's default pruner. A trial stops when its best intermediate value so far is
 * worse than the median of the COMPLETE trials' values at the same step; it is the 50th-percentile
 * case of PercentilePruner, with the same options and the same choice of trials.
 */
import { PercentilePruner, type PercentilePrunerOptions } from './percentile.js';

export class MedianPruner extends PercentilePruner {
  constructor(opts: PercentilePrunerOptions = {}) {
    super(50, opts, 'MedianPruner');
  }
}
