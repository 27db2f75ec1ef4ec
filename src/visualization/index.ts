/**
 * Optuna's plots from code, with Optuna's names: each returns a Plotly figure object (`{ data, layout }`)
 * that the dashboard also renders, and `writeHtml(figure, path)` writes one to a self-contained file.
 *
 *   const fig = plotOptimizationHistory(study, { logY: true });
 *   await writeHtml(fig, 'history.html');
 */
import { getParamImportances, type ImportanceOptions } from '../importance/index.js';
import type { PlotStudy } from './data.js';
import { importanceFigure, type Figure } from './figures.js';

export {
  plotOptimizationHistory,
  plotIntermediateValues,
  plotParallelCoordinate,
  plotSlice,
  plotContour,
  plotRank,
  plotEdf,
  plotTimeline,
  plotParetoFront,
  plotHypervolumeHistory,
  hypervolumeHistory,
  importanceFigure,
} from './figures.js';
export type { Figure, HistoryOptions, TargetOptions } from './figures.js';
export { PlotError, type PlotStudy, type PlotTrial, type Target } from './data.js';
export { nonDominatedIndices } from './pareto.js';
export { writeHtml, figureHtml } from './html.js';

/** Optuna's plot_param_importances: bars of getParamImportances (fANOVA by default). */
export function plotParamImportances(study: PlotStudy, opts: ImportanceOptions = {}): Figure {
  return importanceFigure(getParamImportances(study, opts), { title: `Hyperparameter Importances${opts.evaluator ? ` (${opts.evaluator.name})` : ''}` });
}
