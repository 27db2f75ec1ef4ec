/**
 * `peertune worker`: runs trials of a study, with a module objective (objective.js / .ts) or any
 * command after `--` (the command objective line protocol, src/objectives/command.ts). It joins the
 * study (waiting for it from peers), runs `optimize`, stops cleanly on the first Ctrl-C, and ends with
 * one summary line.
 */
import type { Command } from 'commander';
import { formatParams, logger } from '../../logging.js';
import { commandObjective, killAllCommandObjectives, type CommandObjective } from '../../objectives/command.js';
import { FailureWatch, RepeatedFailureError } from '../../objectives/failure-watch.js';
import type { StudyDirection } from '../../storage/storage.js';
import { createStudy, type Objective, type Study } from '../../study.js';
import {
  algorithmOptions,
  collectDirections,
  joinAddresses,
  joining,
  networkOptions,
  nonNegativeInt,
  openStudy,
  positiveInt,
  positiveSeconds,
  requireStudyName,
  specsFrom,
  subcommand,
  withStorage,
  type AlgorithmFlags,
  type CommonOpts,
} from '../args.js';
import { UsageError } from '../errors.js';
import { trialsTable } from '../format.js';
import { loadModuleObjective } from '../objective-module.js';
import { createPruner, createSampler, storedSpec } from '../registry.js';
import { findStudy, studyRef } from '../storage.js';

interface WorkerOpts extends CommonOpts, AlgorithmFlags {
  maxRetries?: number;
  retryFailed?: boolean;
  keepCheckpoints?: number;
  checkpointScore?: string;
  checkpointOrder?: string;
  checkpointReplicas?: number;
  nTrials?: number;
  timeout?: number;
  nJobs: number;
  nJobsGiven?: boolean;
  maxTrials?: number;
  trialTimeout?: number;
  progressBar: boolean;
  stopOnError?: boolean;
  direction?: StudyDirection[];
  showChildStderr: boolean;
  waitForPeers?: number;
  devices?: string[];
  devicesPerTrial: number;
}

/** `--devices 0,1,2,3 --devices-per-trial 2` -> [["0","1"], ["2","3"]]: one group per job slot. */
function deviceGroups(o: WorkerOpts): string[][] | undefined {
  if (!o.devices) return undefined;
  const per = o.devicesPerTrial;
  if (o.devices.length % per !== 0) {
    throw new UsageError(`--devices lists ${o.devices.length} device(s), which does not split into groups of --devices-per-trial ${per}`);
  }
  const groups: string[][] = [];
  for (let i = 0; i < o.devices.length; i += per) groups.push(o.devices.slice(i, i + per));
  return groups;
}

function deviceList(v: string): string[] {
  const ids = v.split(',').map((x) => x.trim());
  if (ids.length === 0 || ids.some((x) => !/^[A-Za-z0-9:_-]+$/.test(x))) throw new UsageError(`--devices expects a comma-separated list of device ids, e.g. 0,1,2,3; got ${JSON.stringify(v)}`);
  if (new Set(ids).size !== ids.length) throw new UsageError(`--devices lists a device twice: ${v}`);
  return ids;
}

async function workerCommand(o: WorkerOpts, operands: string[], dashDash: boolean): Promise<void> {
  const ref = o.inMemory ? { name: requireStudyName(o) } : studyRef(o);
  const studyName = ref.name ?? ref.id!;
  let objective: Objective;
  let command: CommandObjective | null = null;
  const groups = deviceGroups(o);
  if (dashDash) {
    if (operands.length === 0) throw new UsageError('nothing after --: give the command to run per trial, e.g. -- python3 train.py');
    if (groups) {
      if (o.nJobsGiven && o.nJobs > groups.length) throw new UsageError(`--n-jobs ${o.nJobs} needs ${o.nJobs} device groups; --devices gives ${groups.length}`);
      if (!o.nJobsGiven) o.nJobs = groups.length;
    }
    command = commandObjective({
      command: operands,
      trialTimeout: o.trialTimeout,
      devices: groups,
      // Through the logger, so the lines go above the progress bar instead of through it.
      onStderr: o.showChildStderr ? (line, n) => logger.info(`[trial ${n}] ${line}`) : () => {},
    });
    objective = command;
  } else {
    if (groups) throw new UsageError('--devices applies to command objectives (after --) only; a module objective runs in this process');
    if (operands.length !== 1) {
      throw new UsageError('give one objective: a module file (peertune worker [options] objective.js) or a command after -- (peertune worker [options] -- python3 train.py)');
    }
    if (o.trialTimeout !== undefined) throw new UsageError('--trial-timeout applies to command objectives (after --) only');
    objective = await loadModuleObjective(operands[0]!);
  }
  const watch = new FailureWatch(dashDash ? operands : null);
  if (o.direction && !o.inMemory) throw new UsageError('--direction is for --in-memory studies; a shared study gets its directions at create-study');
  const specs = specsFrom(o);

  await withStorage(o, 'serve', async (opened) => {
    let study: Study;
    if (o.inMemory) {
      const sampler = await createSampler(specs.sampler ?? { name: 'tpe', options: {} });
      const pruner = await createPruner(specs.pruner ?? { name: 'median', options: {} });
      study = await createStudy({ studyName, directions: o.direction ?? ['minimize'], storage: opened.storage, sampler, pruner });
    } else {
      const fromPeers = joining(o);
      if (opened.peerId) logger.info(`Peer ${opened.peerId} started; others can join with:`);
      for (const a of joinAddresses(opened)) logger.info(`  --join ${a}`);
      if (fromPeers && !opened.storage.listStudies().some((s) => s.studyId === ref.id || s.studyName === ref.name)) logger.info(`Waiting for study "${studyName}" from peers...`);
      let info = await findStudy(opened, ref, 60, fromPeers);
      const hasSettings = (i: typeof info) => i.systemAttrs['sampler'] !== undefined;
      if (fromPeers && !hasSettings(info)) {
        // The study's attrs may land a moment after the study itself; give them a few seconds
        // before falling back to the library defaults (a study made with the API has none).
        const deadline = Date.now() + 3000;
        while (!hasSettings(info) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          info = opened.storage.listStudies().find((s) => s.studyId === info.studyId) ?? info;
        }
      }
      study = await openStudy(opened, info, specs, checkpointFlags(o));
      // A stored setting is read (and bounded) only when this peer does not override it.
      const s = specs.sampler ?? storedSpec(info, 'sampler');
      const p = specs.pruner ?? storedSpec(info, 'pruner');
      logger.info(
        `Joined study "${info.studyName}" (${info.studyId}; ${info.directions.join(', ')}) with sampler ${(specs.sampler ?? s)?.name ?? 'default'} and pruner ${(specs.pruner ?? p)?.name ?? 'default'}.`,
      );
    }

    if (o.waitForPeers) await waitForPeers(study, o.waitForPeers);

    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals === 1) {
        logger.info(`Received ${sig}: stopping after the trials in flight (their commands are told to stop); again to quit at once.`);
        study.stop();
        killAllCommandObjectives('SIGTERM');
      } else {
        process.exit(130);
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);

    const mine = () => study.trials.filter((t) => t.owner === opened.storage.ownerId);
    const before = new Set(mine().map((t) => t.trialId));
    const t0 = Date.now();
    try {
      await study.optimize(watch.wrap(objective, study), {
        nTrials: o.nTrials,
        timeout: o.timeout,
        nJobs: o.nJobs,
        maxTrials: o.maxTrials,
        showProgressBar: o.progressBar && process.stderr.isTTY === true,
        // --stop-on-error: the first failure (a module's exception or a command's) ends the run.
        catch: o.stopOnError ? [] : () => true,
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      await command?.close();
    }
    await opened.storage.flush();
    // The last trial's change is published as it finishes; give it a moment on the wire before the
    // node stops, so peers that stay up get it now rather than at their next sync with this peer.
    if (opened.peerId && study.peers.some((p) => !p.self)) await new Promise((r) => setTimeout(r, 1000));
    const ran = mine().filter((t) => !before.has(t.trialId));
    const count = (s: string) => ran.filter((t) => t.state === s).length;
    let bestText = '';
    if (!study.isMultiObjective) {
      const complete = study.getTrials({ states: ['COMPLETE'] });
      if (complete.length) {
        const b = study.bestTrial;
        bestText = ` Best is trial ${b.number} with value: ${b.value} and parameters: ${formatParams(b.params)}.`;
      }
    }
    if (study.isMultiObjective && o.inMemory) {
      // An in-memory study is gone when the worker exits: its Pareto front is the result.
      const front = study.bestTrials;
      if (front.length) {
        logger.info(`Pareto front: ${front.length} trial(s).`);
        process.stdout.write(trialsTable(front, study.directions));
      }
    }
    logger.info(
      `Worker finished: ran ${ran.length} trials on this peer in ${((Date.now() - t0) / 1000).toFixed(1)} s (${count('COMPLETE')} complete, ${count('PRUNED')} pruned, ${count('FAIL')} failed); the study has ${study.trials.length} trials.${bestText}`,
    );
    if (watch.verdict) throw new RepeatedFailureError(watch.verdict);
  });
}

/**
 * Holds the worker back until `n` other peers of the study are alive (heard from within the storage's
 * liveness window), so a swarm started together also starts sampling together. Gives up after a
 * minute and starts anyway.
 */
async function waitForPeers(study: Study, n: number): Promise<void> {
  const live = () => study.peers.filter((p) => !p.self && p.online).length;
  if (live() >= n) return;
  logger.info(`Waiting for ${n} other peer(s) to join study "${study.studyName}"...`);
  const deadline = Date.now() + 60_000;
  while (live() < n) {
    if (Date.now() > deadline) {
      logger.warn(`Only ${live()} other peer(s) after 60 s; starting anyway.`);
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  logger.info(`${live()} other peer(s) are here; starting.`);
}

function retriesCount(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < -1) throw new UsageError(`--max-retries must be an integer >= -1 (-1: no limit), got ${JSON.stringify(v)}`);
  return n;
}

/** The checkpoint and retry flags as study options (checked again, with the library's messages, by the study). */
function checkpointFlags(o: { maxRetries?: number; retryFailed?: boolean; keepCheckpoints?: number; checkpointScore?: string; checkpointOrder?: string; checkpointReplicas?: number }) {
  if (o.checkpointOrder !== undefined && o.checkpointOrder !== 'max' && o.checkpointOrder !== 'min') throw new UsageError(`--checkpoint-order must be max or min, got ${JSON.stringify(o.checkpointOrder)}`);
  const cfg = {
    ...(o.keepCheckpoints === undefined ? {} : { numToKeep: o.keepCheckpoints }),
    ...(o.checkpointScore === undefined ? {} : { scoreAttribute: o.checkpointScore }),
    ...(o.checkpointOrder === undefined ? {} : { scoreOrder: o.checkpointOrder as 'max' | 'min' }),
    ...(o.checkpointReplicas === undefined ? {} : { minReplicas: o.checkpointReplicas }),
  };
  return { checkpointConfig: cfg, ...(o.maxRetries === undefined ? {} : { maxRetries: o.maxRetries }), ...(o.retryFailed ? { retryFailed: true } : {}) };
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'worker', 'run trials: a module objective (objective.js / .ts, default export) or a command after --')
    .usage('[options] <objective.js> | [options] -- <command...>')
    .argument('[objective...]', 'objective module, or the command after --')
    .option('--study-name <name>', 'the study to work on')
    .option('--n-trials <n>', 'trials this worker runs', positiveInt)
    .option('--timeout <seconds>', 'start no trial after this many seconds', positiveSeconds)
    .option('--n-jobs <n>', 'trials in flight at once in this worker (command objectives: one process each; default 1, or one per device group)', positiveInt)
    .option('--max-trials <n>', 'swarm-wide budget: start no trial once the study has this many complete or pruned trials plus this worker\'s running ones', nonNegativeInt)
    .option('--trial-timeout <seconds>', 'command objectives: kill a trial\'s command after this many seconds (the trial FAILs)', positiveSeconds)
    .option('--wait-for-peers <n>', 'start trials only once this many other peers of the study are online (gives up after 60 s)', positiveInt)
    .option('--no-progress-bar', 'no progress bar (it is shown only on a terminal anyway)')
    .option('--no-show-child-stderr', 'do not forward the command\'s stderr (its tail is still kept on failed trials)')
    .option('--stop-on-error', 'stop at the first failed trial (default: the trial FAILs and the worker goes on, unless every trial fails the same way)')
    .option('--devices <ids>', 'command objectives: GPUs to share out, e.g. 0,1,2,3; each job slot gets its own CUDA_VISIBLE_DEVICES', deviceList)
    .option('--devices-per-trial <n>', 'with --devices: devices per job slot (default 1)', positiveInt, 1)
    .option('--max-retries <n>', 'run a trial again (as a new trial with the same params, resuming from its latest checkpoint) when its peer went silent; -1 without limit (default 0)', retriesCount)
    .option('--retry-failed', 'with --max-retries: also retry trials whose objective failed')
    .option('--keep-checkpoints <n>', 'checkpoints kept per trial besides the latest (the best by --checkpoint-score; default all)', positiveInt)
    .option('--checkpoint-score <metric>', 'the checkpoint metric that ranks checkpoints for --keep-checkpoints')
    .option('--checkpoint-order <order>', 'max (default) or min: which --checkpoint-score is better')
    .option('--checkpoint-replicas <n>', 'other peers that must hold a confirmed copy of each checkpoint (default 1)', nonNegativeInt)
    .option('--in-memory', 'a throwaway single-process study, no data dir and no peers (for trying an objective)')
    .option('--direction <direction>', 'with --in-memory: minimize or maximize (repeatable)', collectDirections);
  algorithmOptions(cmd, { overriding: true });
  networkOptions(cmd, 'serve').action((objective: string[], o: WorkerOpts) => {
    o.nJobsGiven = o.nJobs !== undefined;
    o.nJobs ??= 1;
    // commander merges operands from before and after `--`; the command objective is exactly what
    // follows the first `--`, and nothing may come before it.
    const rawArgs = (program as unknown as { rawArgs: string[] }).rawArgs;
    const dash = rawArgs.indexOf('--');
    if (dash < 0) return workerCommand(o, objective, false);
    const command = rawArgs.slice(dash + 1);
    if (objective.length > command.length) {
      throw new UsageError(`give either an objective module or a command after --, not both (got ${objective.slice(0, objective.length - command.length).join(' ')} before --)`);
    }
    return workerCommand(o, command, true);
  });
  cmd.addHelpText(
    'after',
    `
Examples:
  peertune worker --study-name mlp --data-dir ./peer-a --n-trials 50 objective.ts
  peertune worker --study-name mlp --data-dir ./peer-b --join /ip4/192.168.1.10/tcp/7171/p2p/12D3KooW... \\
      --timeout 3600 --trial-timeout 600 -- python3 train.py --epochs 20
  peertune worker --in-memory --direction minimize --study-name try --n-trials 5 -- ./objective.sh

A command after -- speaks JSON lines on its stdout/stdin (see python/peertune_client.py): one
process per job slot runs trial after trial (protocol 2), or one process per trial (protocol 1).
Its stderr is shown, and kept on the trial when it fails. A worker whose first trials all fail the
same way stops and says why.`,
  );
}
