/**
 * The commands that look at a study: `peertune dashboard` (a replica-only peer serving the read-only
 * web dashboard of src/dashboard: it reads a data dir, or a temporary replica synced from --join
 * peers, and pushes every merge to the open pages; without --study-name it opens on the study list),
 * and the same plots and importances from the shell: `peertune plot <kind> -o out.html` and
 * `peertune importance`.
 */
import { Option, type Command } from 'commander';
import { DashboardError, startDashboard, validateDashboardOptions } from '../../dashboard/server.js';
import { FanovaImportanceEvaluator, getParamImportances, MeanDecreaseImpurityImportanceEvaluator, PedAnovaImportanceEvaluator, type ImportanceEvaluator } from '../../importance/index.js';
import { logger } from '../../logging.js';
import {
  plotContour,
  plotEdf,
  plotHypervolumeHistory,
  plotIntermediateValues,
  plotOptimizationHistory,
  plotParallelCoordinate,
  plotParamImportances,
  plotParetoFront,
  plotRank,
  plotSlice,
  plotTimeline,
  writeHtml,
  type Figure,
  type PlotStudy,
} from '../../visualization/index.js';
import { formatOption, joining, networkOptions, nonNegativeInt, out, queryStudy, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { table } from '../format.js';
import { studyRef } from '../storage.js';

interface DashboardOpts extends CommonOpts {
  port: number;
  host: string;
  token?: string | true;
}

async function dashboardCommand(o: DashboardOpts): Promise<void> {
  // Refuse a public host without a token before opening anything.
  try {
    validateDashboardOptions({ host: o.host, port: o.port, token: o.token });
  } catch (e) {
    if (e instanceof DashboardError) throw new UsageError(e.message);
    throw e;
  }
  await withStorage(o, 'query', async (opened) => {
    // --study-name or --study-id: the one study meant (an ambiguous name is an error listing the ids).
    const info = o.studyName || o.studyId ? await queryStudy(opened, o) : null;
    let dash;
    try {
      dash = await startDashboard({ storage: opened.storage as Parameters<typeof startDashboard>[0]['storage'], studyId: info?.studyId, port: o.port, host: o.host, token: o.token });
    } catch (e) {
      if (e instanceof DashboardError) throw new UsageError(e.message);
      throw e;
    }
    out(`dashboard: ${dash.url}`);
    if (dash.token) out('(the URL carries the access token: share it only with people who may see the study)');
    if (opened.peerId) logger.info(`Dashboard peer ${opened.peerId}${joining(o) ? ' joined the swarm' : ' reading its data dir'}; read-only, Ctrl-C to stop.`);
    await new Promise<void>((resolveStop) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolveStop();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await dash.close();
  });
}

// ---------------------------------------------------------------- plot and importance

interface PlotOpts extends CommonOpts {
  output: string;
  params?: string;
  objective?: number;
  logY?: boolean;
  includePruned?: boolean;
  referencePoint?: string;
}

const PLOTS: Record<string, (s: PlotStudy, o: PlotOpts) => Figure> = {
  'optimization-history': (s, o) => plotOptimizationHistory(s, { objective: o.objective ?? (s.directions.length > 1 ? 0 : undefined), logY: o.logY, includePruned: o.includePruned }),
  'intermediate-values': (s) => plotIntermediateValues(s),
  'param-importances': (s, o) => plotParamImportances(s, { params: paramList(o), target: targetOf(s, o) }),
  'parallel-coordinate': (s, o) => plotParallelCoordinate(s, { objective: objectiveOf(s, o), params: paramList(o) }),
  slice: (s, o) => plotSlice(s, { objective: objectiveOf(s, o), params: paramList(o) }),
  contour: (s, o) => plotContour(s, { objective: objectiveOf(s, o), params: pairOf(o) }),
  rank: (s, o) => plotRank(s, { objective: objectiveOf(s, o), params: pairOf(o) }),
  edf: (s, o) => plotEdf(s, { objective: objectiveOf(s, o) }),
  timeline: (s) => plotTimeline(s),
  'pareto-front': (s) => plotParetoFront(s),
  'hypervolume-history': (s, o) => plotHypervolumeHistory(s, o.referencePoint ? o.referencePoint.split(',').map(Number) : undefined),
};

const objectiveOf = (s: PlotStudy, o: PlotOpts): number | undefined => o.objective ?? (s.directions.length > 1 ? 0 : undefined);
const targetOf = (s: PlotStudy, o: { objective?: number }) => {
  if (s.directions.length === 1 && o.objective === undefined) return undefined;
  const k = o.objective ?? 0;
  const sign = s.directions[k] === 'maximize' ? -1 : 1;
  return (t: { values: readonly number[] | null }) => (t.values ? sign * t.values[k]! : null);
};
const paramList = (o: { params?: string }): string[] | undefined => (o.params ? o.params.split(',').map((p) => p.trim()).filter(Boolean) : undefined);
function pairOf(o: PlotOpts): [string, string] | undefined {
  const p = paramList(o);
  if (p && p.length !== 2) throw new UsageError(`--params for contour and rank takes two params, e.g. --params x,y; got ${p.length}`);
  return p as [string, string] | undefined;
}

async function plotCommand(kind: string, o: PlotOpts): Promise<void> {
  const make = PLOTS[kind];
  if (!make) throw new UsageError(`unknown plot "${kind}"; one of: ${Object.keys(PLOTS).join(', ')}`);
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const study = { directions: info.directions, trials: opened.storage.getAllTrials(info.studyId) };
    let fig: Figure;
    try {
      fig = make(study, o);
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    await writeHtml(fig, o.output);
    out(`wrote ${o.output} (${kind} of "${info.studyName}", ${study.trials.length} trials; opens offline)`);
  });
}

interface ImportanceOpts extends CommonOpts {
  evaluator: string;
  seed?: number;
  objective?: number;
  params?: string;
}

async function importanceCommand(o: ImportanceOpts): Promise<void> {
  const evaluators: Record<string, () => ImportanceEvaluator> = {
    fanova: () => new FanovaImportanceEvaluator({ seed: o.seed }),
    mdi: () => new MeanDecreaseImpurityImportanceEvaluator({ seed: o.seed }),
    'ped-anova': () => new PedAnovaImportanceEvaluator(),
  };
  studyRef(o);
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const study = { directions: info.directions, trials: opened.storage.getAllTrials(info.studyId) };
    if (info.directions.length > 1 && o.objective === undefined) throw new UsageError('a multi-objective study needs --objective <index> (0-based)');
    if (o.objective !== undefined && o.objective >= info.directions.length) throw new UsageError(`--objective must be below ${info.directions.length}`);
    const imp = getParamImportances(study, { evaluator: evaluators[o.evaluator]!(), params: paramList(o), target: targetOf(study, o) });
    if (o.format === 'json') out(JSON.stringify(imp, null, 2));
    else if (Object.keys(imp).length === 0) out(`study "${info.studyName}" needs at least two COMPLETE trials with params for importances`);
    else out(table(['param', 'importance'], Object.entries(imp).map(([k, v]) => [k, Number(v.toFixed(4))])));
  });
}

export function register(program: Command): void {
  const plot = subcommand(program, 'plot', 'write one of Optuna\'s plots of a study to a self-contained HTML file')
    .argument('<kind>', Object.keys(PLOTS).join(', '))
    .requiredOption('-o, --output <file>', 'HTML file to write')
    .requiredOption('--study-name <name>', 'the study')
    .option('--params <list>', 'comma-separated params (contour and rank: exactly two)')
    .option('--objective <index>', 'which objective of a multi-objective study (0-based)', nonNegativeInt)
    .option('--log-y', 'optimization-history: log scale for values')
    .option('--include-pruned', 'optimization-history: also plot PRUNED trials')
    .option('--reference-point <values>', 'hypervolume-history: comma-separated, in the study\'s directions (default: worst seen + 10%)');
  networkOptions(plot, 'query').action((kind: string, o: PlotOpts) => plotCommand(kind, o));

  const imp = subcommand(program, 'importance', 'parameter importances of a study (fANOVA by default, as Optuna)')
    .requiredOption('--study-name <name>', 'the study')
    .addOption(new Option('--evaluator <name>', 'importance evaluator').choices(['fanova', 'mdi', 'ped-anova']).default('fanova'))
    .option('--seed <n>', 'random-forest seed (fanova, mdi)', nonNegativeInt)
    .option('--objective <index>', 'which objective of a multi-objective study (0-based)', nonNegativeInt)
    .option('--params <list>', 'comma-separated params (default: those every COMPLETE trial has)');
  formatOption(networkOptions(imp, 'query'), ['table', 'json'], 'table').action((o: ImportanceOpts) => importanceCommand(o));

  const cmd = subcommand(program, 'dashboard', 'serve a live, read-only web dashboard of a replica (plots, importances, trials, peers)')
    .option('--study-name <name>', 'open on this study (default: the study list; --study-id when several share the name)')
    .option('--port <port>', 'HTTP port (0 = any free port)', nonNegativeInt, 8080)
    .option('--host <host>', 'address to bind; anything but loopback needs --token', '127.0.0.1')
    .option('--token [secret]', 'access token required by every request (alone: generate one); the printed URL carries it');
  networkOptions(cmd, 'query').action((o: DashboardOpts) => dashboardCommand(o));
}
