/**
 * The read-only commands: `studies`, `trials`, `best-trial`, `best-trials`, `export`. Each reads the
 * local replica offline, or a temporary one synced from --join peers. Every JSON they print uses
 * snake_case keys (Optuna's column names), the same as `trials -f csv` and `export`.
 */
import type { Command } from 'commander';
import { writeFile } from 'node:fs/promises';
import { toCsv } from '../../export.js';
import { logger } from '../../logging.js';
import type { FrozenTrial, StudyInfo } from '../../storage/storage.js';
import { loadStudy, type Study } from '../../study.js';
import { formatOption, networkOptions, out, queryStudy, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { table, terminalCsv, trialJson, trialsTable, type Format } from '../format.js';
import { storedSpec } from '../registry.js';
import { settle, type OpenedStorage } from '../storage.js';

/** The stored algorithm's name for the list (a setting out of bounds is listed, marked, not refused). */
function specName(s: StudyInfo, key: 'sampler' | 'pruner'): string | null {
  try {
    return storedSpec(s, key)?.name ?? null;
  } catch {
    return `${String((s.systemAttrs[key] as { name?: unknown })?.name).slice(0, 40)} (out of bounds)`;
  }
}

async function studiesCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    if (o.join?.length) await settle(opened.storage, null, Math.min(o.wait, 5), 1500);
    const rows = opened.storage.listStudies().map((s) => {
      const trials = opened.storage.getAllTrials(s.studyId);
      return {
        study_name: s.studyName,
        study_id: s.studyId,
        directions: s.directions.join(','),
        n_trials: trials.length,
        n_complete: trials.filter((t) => t.state === 'COMPLETE').length,
        sampler: specName(s, 'sampler'),
        pruner: specName(s, 'pruner'),
        created_at: s.createdAt.toISOString(),
        creator: s.creator ?? null,
      };
    });
    if (o.format === 'json') out(JSON.stringify(rows, null, 2));
    else {
      const cols = ['study_name', 'study_id', 'directions', 'n_trials', 'n_complete', 'sampler', 'pruner', 'created_at'] as const;
      out(table([...cols], rows.map((r) => cols.map((c) => r[c]))));
    }
  });
}

/** The study's trials as JSON: `{study_name, directions, trials: [trialJson...]}`. */
function trialsJson(info: StudyInfo, trials: readonly FrozenTrial[]): string {
  return JSON.stringify({ study_name: info.studyName, directions: info.directions, trials: trials.map(trialJson) }, null, 2);
}

async function trialsCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const trials = opened.storage.getAllTrials(info.studyId);
    if (o.format === 'json') out(trialsJson(info, trials));
    else if (o.format === 'csv') out(terminalCsv(toCsv({ directions: info.directions, trials })));
    else out(trials.length ? trialsTable(trials, info.directions) : `study "${info.studyName}" has no trials yet`);
  });
}

/** A read-only view of the study: the Study class is the one place that knows what "best" means. */
function studyOf(opened: OpenedStorage, info: StudyInfo): Promise<Study> {
  return loadStudy({ studyName: info.studyName, studyId: info.studyId, storage: opened.storage });
}

function printTrials(trials: FrozenTrial[], info: StudyInfo, format: Format, single: boolean): void {
  if (format === 'json') out(JSON.stringify(single ? trialJson(trials[0]!) : trials.map(trialJson), null, 2));
  else out(trialsTable(trials, info.directions));
}

async function bestTrialCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const study = await studyOf(opened, info);
    if (study.isMultiObjective) throw new UsageError(`study "${info.studyName}" has ${info.directions.length} directions; use best-trials for its Pareto front`);
    printTrials([study.bestTrial], info, o.format ?? 'table', true);
  });
}

async function bestTrialsCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const best = (await studyOf(opened, info)).bestTrials;
    if (best.length === 0) throw new UsageError(`study "${info.studyName}" has no completed trials yet`);
    printTrials(best, info, o.format ?? 'table', false);
  });
}

async function exportCommand(o: CommonOpts & { output?: string }): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const trials = opened.storage.getAllTrials(info.studyId);
    const text = o.format === 'csv' ? toCsv({ directions: info.directions, trials }) : trialsJson(info, trials);
    if (o.output) {
      // A file keeps the data exact (formula cells are still neutralised by toCsv).
      await writeFile(o.output, text.endsWith('\n') ? text : text + '\n');
      logger.info(`Exported ${trials.length} trials of study "${info.studyName}" to ${o.output}.`);
    } else out(o.format === 'csv' ? terminalCsv(text) : text);
  });
}

export function register(program: Command): void {
  const studies = subcommand(program, 'studies', 'list the studies in a replica');
  formatOption(networkOptions(studies, 'query'), ['table', 'json'], 'table').action((o: CommonOpts) => studiesCommand(o));

  const trials = subcommand(program, 'trials', 'list a study\'s trials').option('--study-name <name>', 'the study');
  formatOption(networkOptions(trials, 'query'), ['table', 'csv', 'json'], 'table').action((o: CommonOpts) => trialsCommand(o));

  const best = subcommand(program, 'best-trial', 'the best trial of a single-objective study').option('--study-name <name>', 'the study');
  formatOption(networkOptions(best, 'query'), ['table', 'json'], 'table').action((o: CommonOpts) => bestTrialCommand(o));

  const bests = subcommand(program, 'best-trials', 'the Pareto front (the best trials) of a study').option('--study-name <name>', 'the study');
  formatOption(networkOptions(bests, 'query'), ['table', 'json'], 'table').action((o: CommonOpts) => bestTrialsCommand(o));

  const exp = subcommand(program, 'export', 'export a study\'s trials as CSV or JSON')
    .option('--study-name <name>', 'the study')
    .option('-o, --output <file>', 'write to a file instead of stdout');
  formatOption(networkOptions(exp, 'query'), ['csv', 'json'], 'csv').action((o: CommonOpts & { output?: string }) => exportCommand(o));
}
