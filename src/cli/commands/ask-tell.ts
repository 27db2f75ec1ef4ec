/**
 * `peertune ask` and `peertune tell`: Optuna's ask-and-tell from the shell. ask starts a trial in this
 * peer's data dir and prints its params; tell, later and on the same data dir (only the peer that
 * asked a trial may finish it), gives it its values or final state.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { logger } from '../../logging.js';
import { distributionFromWire } from '../../objectives/command.js';
import { finiteNumbers, formatOption, joining, networkOptions, nonNegativeInt, openStudy, out, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { table } from '../format.js';
import { findStudy, studyRef } from '../storage.js';

/** Optuna's --search-space JSON ({"x": {"name": "FloatDistribution", "attributes": {...}}}) or peertune's wire form. */
export function parseSearchSpace(text: string | undefined, flag = '--search-space') {
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} must be JSON, e.g. '{"x": {"type": "float", "low": 0, "high": 1}}'; got ${JSON.stringify(text)}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${flag} must be a JSON object from parameter name to distribution`);
  const optunaNames: Record<string, string> = { FloatDistribution: 'float', IntDistribution: 'int', CategoricalDistribution: 'categorical' };
  const space: Record<string, ReturnType<typeof distributionFromWire>> = {};
  for (const [name, d] of Object.entries(raw as Record<string, unknown>)) {
    let wire = d as Record<string, unknown>;
    if (wire && typeof wire === 'object' && typeof wire['name'] === 'string' && wire['attributes']) {
      const type = optunaNames[wire['name'] as string];
      if (!type) throw new UsageError(`${flag}: parameter "${name}" has unknown distribution ${JSON.stringify(wire['name'])}; use ${Object.keys(optunaNames).join(', ')}`);
      wire = { type, ...(wire['attributes'] as Record<string, unknown>) };
    }
    space[name] = distributionFromWire(name, wire);
  }
  return space;
}

async function askCommand(o: CommonOpts & { searchSpace?: string }): Promise<void> {
  if (!o.dataDir && !o.inMemory) throw new UsageError('ask needs --data-dir: tell must later open the same data dir, because only the peer that asked a trial can tell it');
  const space = parseSearchSpace(o.searchSpace);
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, studyRef(o), o.wait, joining(o));
    const study = await openStudy(opened, info);
    const trial = study.ask(space);
    // This process exits before `tell`; the mark tells the storage that the RUNNING trial is not a
    // leftover of a crash when the data dir is opened again.
    opened.storage.setTrialSystemAttr(study.studyId, trial.trialId, 'askedByCli', true);
    await opened.storage.flush();
    const snap = trial.snapshot();
    const result = { number: snap.number, trial_id: snap.trialId, params: trial.params };
    if (o.format === 'table') out(table(['number', ...Object.keys(result.params)], [[result.number, ...Object.values(result.params)]]));
    else out(JSON.stringify(result));
  });
}

async function tellCommand(o: CommonOpts & { trialNumber?: number; values?: number[]; state?: string; skipIfFinished?: boolean }): Promise<void> {
  const trialNumber = o.trialNumber;
  if (trialNumber === undefined) throw new UsageError('--trial-number is required');
  const state = o.state?.toUpperCase() as 'COMPLETE' | 'PRUNED' | 'FAIL' | undefined;
  if (!o.values && (state === undefined || state === 'COMPLETE')) throw new UsageError('tell needs --values (or --state pruned|fail)');
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, studyRef(o), o.wait, joining(o));
    const study = await openStudy(opened, info);
    const t = study.trials.find((x) => x.number === trialNumber);
    if (!t) throw new UsageError(`study "${info.studyName}" has no trial number ${trialNumber}`);
    if (t.state !== 'RUNNING' && t.state !== 'WAITING') {
      if (o.skipIfFinished) {
        logger.info(`Trial ${t.number} is already finished (${t.state}); skipped.`);
        return;
      }
      throw new UsageError(`trial ${t.number} is already finished (${t.state}); pass --skip-if-finished to ignore`);
    }
    const values = o.values === undefined ? null : o.values.length === 1 ? o.values[0]! : o.values;
    const done = await study.tell(trialNumber, values, state ? { state } : {}); // with its settled number
    await study.flushLog();
    out(`Told trial ${done.number} with ${done.values ? `values: [${done.values.join(', ')}]` : 'no values'} and state: ${done.state}.`);
  });
}

export function register(program: Command): void {
  const ask = subcommand(program, 'ask', 'start a trial and print its parameters (as Optuna\'s ask)')
    .option('--study-name <name>', 'the study')
    .option('--search-space <json>', 'parameters to sample: {"x": {"type": "float", "low": 0, "high": 1}} (Optuna\'s form works too)');
  formatOption(networkOptions(ask, 'edit'), ['json', 'table'], 'json').action((o: CommonOpts & { searchSpace?: string }) => askCommand(o));

  const tell = subcommand(program, 'tell', 'finish a trial started with ask (same --data-dir)')
    .option('--study-name <name>', 'the study')
    .option('--trial-number <n>', 'the trial number ask printed', nonNegativeInt)
    .option('--values <value>', 'objective value (repeat for each direction)', finiteNumbers)
    .addOption(new Option('--state <state>', 'final state').choices(['complete', 'pruned', 'fail']))
    .option('--skip-if-finished', 'do nothing if the trial is already finished');
  networkOptions(tell, 'edit').action((o: Parameters<typeof tellCommand>[0]) => tellCommand(o));
}
