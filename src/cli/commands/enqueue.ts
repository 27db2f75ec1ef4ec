/**
 * `peertune enqueue`: Optuna's enqueue_trial from the shell. The trial waits in the study with fixed
 * params and runs before any sampled one, on whichever peer claims it first.
 */
import type { Command } from 'commander';
import type { ParamValue } from '../../distributions.js';
import { joining, networkOptions, out, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { findStudy, studyRef } from '../storage.js';
import { loadStudy } from '../../study.js';

function jsonObject(flag: string, text: string | undefined, example: string): Record<string, unknown> | undefined {
  if (text === undefined) return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UsageError(`${flag} must be a JSON object, e.g. '${example}'; got ${JSON.stringify(text)}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError(`${flag} must be a JSON object, e.g. '${example}'`);
  return raw as Record<string, unknown>;
}

async function enqueueCommand(o: CommonOpts & { params?: string; userAttrs?: string; skipIfExists?: boolean }): Promise<void> {
  const params = jsonObject('--params', o.params, '{"x": 1, "kind": "rbf"}');
  if (!params) throw new UsageError('--params is required, e.g. --params \'{"x": 1}\'');
  const userAttrs = jsonObject('--user-attrs', o.userAttrs, '{"source": "manual"}');
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, studyRef(o), o.wait, joining(o));
    const study = await loadStudy({ studyName: info.studyName, studyId: info.studyId, storage: opened.storage });
    const before = study.trials.length;
    await study.enqueueTrial(params as Record<string, ParamValue>, { userAttrs, skipIfExists: o.skipIfExists });
    await opened.storage.flush();
    if (study.trials.length === before) out(`A trial with these params exists already in study "${info.studyName}"; nothing enqueued.`);
    else out(`Enqueued a trial in study "${info.studyName}" with params ${JSON.stringify(params)}.`);
  });
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'enqueue', 'add a trial with fixed params, run before any sampled trial (as Optuna\'s enqueue_trial)')
    .option('--study-name <name>', 'the study')
    .option('--params <json>', 'the params, e.g. \'{"x": 1, "kind": "rbf"}\'')
    .option('--user-attrs <json>', 'user attrs for the trial, e.g. \'{"source": "manual"}\'')
    .option('--skip-if-exists', 'do nothing if a trial with these params exists already');
  networkOptions(cmd, 'edit').action((o: Parameters<typeof enqueueCommand>[0]) => enqueueCommand(o));
}
