/**
 * `peertune pbt-policy`: Ray Tune's pbt_policy_<trial>.txt (with --trial) or pbt_global.txt (without)
 * from the replica. One perturbation a line, as Ray writes them: [exploited trial, cloned trial, the
 * exploited trial's step, the cloned checkpoint's step, cloned config, new config], with this replica's
 * trial numbers; `-f json` gives objects with the trial ids (the same on every replica) as well.
 */
import { Option, type Command } from 'commander';
import { globalPolicy, policyOf, type PolicyLine } from '../../pbt/lineage.js';
import { nonNegativeInt, networkOptions, out, queryStudy, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';

async function pbtPolicyCommand(o: CommonOpts & { trial?: number }): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const trials = opened.storage.getAllTrials(info.studyId);
    const numberOf = new Map(trials.map((t) => [t.trialId, t.number] as const));
    let lines: PolicyLine[];
    if (o.trial !== undefined) {
      const t = trials.find((x) => x.number === o.trial);
      if (!t) throw new UsageError(`study "${info.studyName}" has no trial ${o.trial} (trials 0 to ${trials.length - 1} here)`);
      lines = policyOf(t.trialId, trials);
      if (lines.length === 0 && o.format !== 'json') {
        out(`Trial ${o.trial} has no perturbations: it was not cloned from another member (its params are its own from the start).`);
        return;
      }
    } else {
      lines = globalPolicy(trials);
      if (lines.length === 0 && o.format !== 'json') {
        out(`Study "${info.studyName}" has no PBT perturbations yet.`);
        return;
      }
    }
    const n = (id: string) => numberOf.get(id) ?? null;
    if (o.format === 'json') {
      out(JSON.stringify(lines.map((l) => ({ trial: n(l.trial), trial_id: l.trial, cloned_trial: n(l.clonedTrial), cloned_trial_id: l.clonedTrial, step: l.step, cloned_step: l.clonedStep, cloned_config: l.clonedConfig, new_config: l.newConfig, continuation: n(l.continuation), continuation_id: l.continuation })), null, 2));
    } else {
      out(lines.map((l) => JSON.stringify([n(l.trial), n(l.clonedTrial), l.step, l.clonedStep, l.clonedConfig, l.newConfig])).join('\n'));
    }
  });
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'pbt-policy', "a PBT study's perturbations, as Ray Tune's pbt_policy_<trial>.txt (--trial) or pbt_global.txt")
    .option('--study-name <name>', 'the study')
    .option('--trial <number>', 'the schedule that produced this trial: the perturbations of its ancestors, then its own', nonNegativeInt);
  networkOptions(cmd, 'query').addOption(new Option('-f, --format <format>', 'output format: ray (JSON lists, one a line) or json').choices(['ray', 'json']).default('ray'));
  cmd.action((o: CommonOpts & { trial?: number }) => pbtPolicyCommand(o));
}
