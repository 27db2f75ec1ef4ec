#!/usr/bin/env node
/**
 * The `peertune` command: create a study, run workers and replica-only nodes on any number of
 * machines, and query or export the history (Optuna's CLI, plus the peer-to-peer verbs). Each
 * subcommand is a thin layer over the library; the one rule here is that a user mistake becomes one
 * line on stderr and a non-zero exit (2 for a bad invocation, 1 for anything else), never a stack
 * trace (set PEERTUNE_DEBUG=1 to see one).
 */
import './polyfills.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { toCsv, toJson } from '../export.js';
import { generateSwarmKey, writeSwarmKeyFile } from '../security/index.js';
import { formatParams, logger, setVerbosity, type LogLevel } from '../logging.js';
import { CommandObjectiveError, commandObjective, distributionFromWire, killAllCommandObjectives } from '../objectives/command.js';
import type { FrozenTrial, StudyDirection, StudyInfo } from '../storage/storage.js';
import { createStudy, loadStudy, type Objective, type Study } from '../study.js';
import { TrialPruned, type Trial } from '../trial.js';
import { UsageError, describeError, exitCodeFor } from './errors.js';
import { table, trialJson, trialsTable, type Format } from './format.js';
import { createPruner, createSampler, parseOptionsJson, storedSpec, type AlgorithmSpec } from './registry.js';
import { findStudy, openStorage, settle, type NetworkFlags, type OpenedStorage, type Role } from './storage.js';

// ---------------------------------------------------------------------------------------------
// Argument parsers (commander turns InvalidArgumentError into one line naming the option).

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of seconds, got ${JSON.stringify(v)}`);
  return n;
}

function direction(v: string): StudyDirection {
  if (v !== 'minimize' && v !== 'maximize') throw new InvalidArgumentError(`expected "minimize" or "maximize", got ${JSON.stringify(v)}`);
  return v;
}

function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

function collectDirections(v: string, prev: StudyDirection[] | undefined): StudyDirection[] {
  return [...(prev ?? []), direction(v)];
}

function finiteNumber(v: string, prev: number[] | undefined): number[] {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a finite number, got ${JSON.stringify(v)}`);
  return [...(prev ?? []), n];
}

// ---------------------------------------------------------------------------------------------
// Shared option groups.

interface CommonOpts extends NetworkFlags {
  studyName?: string;
  wait: number;
  format?: Format;
}

function networkOptions(cmd: Command, role: 'serve' | 'query' | 'edit'): Command {
  cmd
    .option('--data-dir <dir>', `this peer's replica and identity (default: $PEERTUNE_DATA_DIR or ./peertune-data${role === 'query' ? '; a temporary one with --join' : ''})`)
    .option('--join <multiaddr>', 'a peer to join (repeatable), as printed by create-study, worker or node', collect)
    .option(
      '--listen <multiaddr>',
      role === 'serve' ? 'address to listen on (repeatable; default /ip4/0.0.0.0/tcp/7171, or tcp/0 with --join)' : 'address to listen on (repeatable; default: offline unless --join)',
      collect,
    )
    .option('--mdns', 'find peers on the LAN by mDNS')
    .option('--swarm-key <file>', 'pre-shared swarm key file: only peers with the same key can connect')
    .option('--allow-peer <peerId>', 'accept only these peer ids (repeatable)', collect);
  if (role === 'query') cmd.option('--wait <seconds>', 'with --join: how long to wait for the study to arrive from peers', positiveSeconds, 10);
  return cmd;
}

function formatOption(cmd: Command, choices: Format[], dflt: Format): Command {
  return cmd.addOption(new Option('-f, --format <format>', 'output format').choices(choices).default(dflt));
}

function requireStudyName(o: { studyName?: string }): string {
  if (!o.studyName) throw new UsageError('--study-name is required');
  return o.studyName;
}

/** Opens the storage, runs `body`, and always closes the storage (so no process is left hanging). */
async function withStorage<T>(o: NetworkFlags, role: Role, body: (opened: OpenedStorage) => Promise<T>): Promise<T> {
  const opened = await openStorage(o, role);
  try {
    return await body(opened);
  } finally {
    await opened.close();
  }
}

/** A query command's study: from the local replica, or synced from `--join` peers first. */
async function queryStudy(opened: OpenedStorage, o: CommonOpts): Promise<StudyInfo> {
  const joining = (o.join?.length ?? 0) > 0;
  const info = await findStudy(opened, requireStudyName(o), o.wait, joining);
  if (joining) await settle(opened.storage, info.studyId, Math.min(o.wait, 5));
  return info;
}

async function openStudy(opened: OpenedStorage, info: StudyInfo, overrides: { sampler?: AlgorithmSpec; pruner?: AlgorithmSpec } = {}): Promise<Study> {
  const samplerSpec = overrides.sampler ?? storedSpec(info, 'sampler');
  const prunerSpec = overrides.pruner ?? storedSpec(info, 'pruner');
  return loadStudy({
    studyName: info.studyName,
    storage: opened.storage,
    sampler: samplerSpec ? await createSampler(samplerSpec) : undefined,
    pruner: prunerSpec ? await createPruner(prunerSpec) : undefined,
  });
}

function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : text + '\n');
}

function algorithmOptions(cmd: Command, forWorker: boolean): Command {
  const when = forWorker ? ' (overrides the study\'s choice on this peer)' : '';
  return cmd
    .option('--sampler <name>', `sampler: tpe, random, grid, nsga2${when}`)
    .option('--sampler-options <json>', 'sampler options as JSON, e.g. \'{"seed": 1}\'')
    .option('--pruner <name>', `pruner: median, percentile, successive-halving, hyperband, threshold, patient, nop${when}`)
    .option('--pruner-options <json>', 'pruner options as JSON, e.g. \'{"nWarmupSteps": 5}\'');
}

function specsFrom(o: { sampler?: string; samplerOptions?: string; pruner?: string; prunerOptions?: string }): {
  sampler?: AlgorithmSpec;
  pruner?: AlgorithmSpec;
} {
  if (o.samplerOptions !== undefined && o.sampler === undefined) throw new UsageError('--sampler-options needs --sampler');
  if (o.prunerOptions !== undefined && o.pruner === undefined) throw new UsageError('--pruner-options needs --pruner');
  return {
    sampler: o.sampler ? { name: o.sampler, options: parseOptionsJson('--sampler-options', o.samplerOptions) } : undefined,
    pruner: o.pruner ? { name: o.pruner, options: parseOptionsJson('--pruner-options', o.prunerOptions) } : undefined,
  };
}

/** The addresses worth printing first: LAN ones before loopback. */
function joinAddresses(opened: OpenedStorage): string[] {
  const all = opened.multiaddrs();
  const loop = (a: string) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/');
  return [...all.filter((a) => !loop(a)), ...all.filter(loop)];
}

// ---------------------------------------------------------------------------------------------
// Subcommands.

async function cmdCreateStudy(o: CommonOpts & { direction?: StudyDirection[]; sampler?: string; samplerOptions?: string; pruner?: string; prunerOptions?: string; skipIfExists?: boolean; private?: boolean }) {
  const dirs = o.direction ?? ['minimize'];
  const specs = specsFrom(o);
  const samplerSpec = specs.sampler ?? { name: 'tpe', options: {} };
  // Pruning needs one objective (as in Optuna), so multi-objective studies default to no pruner.
  const prunerSpec = specs.pruner ?? { name: dirs.length > 1 ? 'nop' : 'median', options: {} };
  // Build both now so a bad option is reported here, not by every worker later.
  await createSampler(samplerSpec);
  await createPruner(prunerSpec);
  if (o.private) {
    // A private study: a fresh swarm key that every other peer must be given (--swarm-key).
    o.swarmKey ??= join(resolve(o.dataDir ?? process.env['PEERTUNE_DATA_DIR'] ?? './peertune-data'), 'swarm.key');
    await writeSwarmKeyFile(o.swarmKey, generateSwarmKey());
  }
  await withStorage(o, 'serve', async (opened) => {
    const name = o.studyName ?? `study-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const existing = opened.storage.getStudy(name);
    if (existing && !o.skipIfExists) {
      throw new UsageError(`a study named "${name}" already exists in ${opened.dataDir ?? 'this storage'}; pass --skip-if-exists to reuse it`);
    }
    let info = existing;
    if (!info) {
      const study = await createStudy({ studyName: name, directions: dirs, storage: opened.storage });
      opened.storage.setStudySystemAttr(study.studyId, 'sampler', samplerSpec);
      opened.storage.setStudySystemAttr(study.studyId, 'pruner', prunerSpec);
      await opened.storage.flush();
      info = opened.storage.getStudy(name)!;
    }
    out(`study: ${info.studyName}`);
    out(`study id: ${info.studyId}`);
    out(`directions: ${info.directions.join(', ')}`);
    if (opened.peerId) out(`peer id: ${opened.peerId}`);
    for (const a of joinAddresses(opened)) out(`join: ${a}`);
    if (o.private) out(`swarm key: ${o.swarmKey} (copy it to every other peer and pass --swarm-key <file>)`);
  });
}

async function loadModuleObjective(file: string): Promise<Objective> {
  const abs = resolve(file);
  const ext = extname(abs);
  if (!['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'].includes(ext)) {
    throw new UsageError(`objective file ${file} must be .js, .mjs, .cjs or .ts; to run another program per trial, put it after --, e.g. peertune worker ... -- python3 ${file}`);
  }
  if (!existsSync(abs)) throw new UsageError(`objective file ${file} does not exist`);
  let mod: Record<string, unknown>;
  if (['.ts', '.mts', '.cts'].includes(ext)) {
    let tsImport: (specifier: string, parent: string) => Promise<unknown>;
    try {
      ({ tsImport } = (await import('tsx/esm/api')) as { tsImport: typeof tsImport });
    } catch {
      throw new UsageError(`running a .ts objective needs the tsx package (npm install tsx), or compile ${file} to .js first`);
    }
    mod = (await tsImport(pathToFileURL(abs).href, import.meta.url)) as Record<string, unknown>;
  } else {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  }
  let fn = mod['default'];
  // A CommonJS module or a TS file loaded through interop may nest the default export once more.
  if (fn && typeof fn === 'object' && typeof (fn as { default?: unknown }).default === 'function') fn = (fn as { default: unknown }).default;
  if (typeof fn !== 'function') fn = mod['objective'];
  if (typeof fn !== 'function') {
    throw new UsageError(`${file} has no objective: export default function objective(trial) { ... } (or export const objective)`);
  }
  const objective = fn as Objective;
  return async (trial: Trial) => {
    try {
      return await objective(trial);
    } catch (err) {
      // The module may import TrialPruned from another copy of peertune (src vs dist); honour it by name.
      if (err instanceof Error && err.name === 'TrialPruned' && !(err instanceof TrialPruned)) throw new TrialPruned(err.message);
      throw err;
    }
  };
}

interface WorkerOpts extends CommonOpts {
  nTrials?: number;
  timeout?: number;
  nJobs: number;
  maxTrials?: number;
  trialTimeout?: number;
  progressBar: boolean;
  stopOnError?: boolean;
  direction?: StudyDirection[];
  sampler?: string;
  samplerOptions?: string;
  pruner?: string;
  prunerOptions?: string;
  showChildStderr: boolean;
  waitForPeers?: number;
}

async function cmdWorker(o: WorkerOpts, operands: string[], dashDash: boolean) {
  const studyName = requireStudyName(o);
  let objective: Objective;
  let isCommand = false;
  if (dashDash) {
    if (operands.length === 0) throw new UsageError('nothing after --: give the command to run per trial, e.g. -- python3 train.py');
    objective = commandObjective({
      command: operands,
      trialTimeout: o.trialTimeout,
      // Through the logger, so the lines go above the progress bar instead of through it.
      onStderr: o.showChildStderr ? (line, n) => logger.info(`[trial ${n}] ${line}`) : () => {},
    });
    isCommand = true;
  } else {
    if (operands.length !== 1) {
      throw new UsageError('give one objective: a module file (peertune worker [options] objective.js) or a command after -- (peertune worker [options] -- python3 train.py)');
    }
    if (o.trialTimeout !== undefined) throw new UsageError('--trial-timeout applies to command objectives (after --) only');
    objective = await loadModuleObjective(operands[0]!);
  }
  if (o.direction && !o.inMemory) throw new UsageError('--direction is for --in-memory studies; a shared study gets its directions at create-study');
  const specs = specsFrom(o);

  await withStorage(o, 'serve', async (opened) => {
    let study: Study;
    if (o.inMemory) {
      const sampler = await createSampler(specs.sampler ?? { name: 'tpe', options: {} });
      const pruner = await createPruner(specs.pruner ?? { name: 'median', options: {} });
      study = await createStudy({ studyName, directions: o.direction ?? ['minimize'], storage: opened.storage, sampler, pruner });
    } else {
      const joining = (o.join?.length ?? 0) > 0 || Boolean(o.mdns);
      if (opened.peerId) logger.info(`Peer ${opened.peerId} started; others can join with:`);
      for (const a of joinAddresses(opened)) logger.info(`  --join ${a}`);
      if (!opened.storage.getStudy(studyName) && joining) logger.info(`Waiting for study "${studyName}" from peers...`);
      let info = await findStudy(opened, studyName, 60, joining);
      if (joining && !storedSpec(info, 'sampler')) {
        // The study's attrs may land a moment after the study itself; give them a few seconds
        // before falling back to the library defaults (a study made with the API has none).
        const deadline = Date.now() + 3000;
        while (!storedSpec(info, 'sampler') && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100));
          info = opened.storage.getStudy(studyName) ?? info;
        }
      }
      study = await openStudy(opened, info, specs);
      const s = storedSpec(info, 'sampler');
      const p = storedSpec(info, 'pruner');
      logger.info(
        `Joined study "${studyName}" (${info.directions.join(', ')}) with sampler ${(specs.sampler ?? s)?.name ?? 'default'} and pruner ${(specs.pruner ?? p)?.name ?? 'default'}.`,
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
      await study.optimize(objective, {
        nTrials: o.nTrials,
        timeout: o.timeout,
        nJobs: o.nJobs,
        maxTrials: o.maxTrials,
        showProgressBar: o.progressBar && process.stderr.isTTY === true,
        catch: o.stopOnError ? (isCommand ? [CommandObjectiveError] : []) : () => true,
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
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
    logger.info(
      `Worker finished: ran ${ran.length} trials on this peer in ${((Date.now() - t0) / 1000).toFixed(1)} s (${count('COMPLETE')} complete, ${count('PRUNED')} pruned, ${count('FAIL')} failed); the study has ${study.trials.length} trials.${bestText}`,
    );
  });
}

/**
 * Holds the worker back until `n` other peers of the study are alive (seen within a few seconds), so
 * a swarm started together also starts sampling together. Gives up after a minute and starts anyway.
 */
async function waitForPeers(study: Study, n: number): Promise<void> {
  const live = () => study.peers.filter((p) => !p.self && p.lastSeen !== null && Date.now() - p.lastSeen.getTime() < 5000).length;
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

async function cmdNode(o: CommonOpts) {
  await withStorage(o, 'serve', async (opened) => {
    if (opened.peerId) out(`peer id: ${opened.peerId}`);
    for (const a of joinAddresses(opened)) out(`join: ${a}`);
    if (o.studyName) {
      const joining = (o.join?.length ?? 0) > 0 || Boolean(o.mdns);
      const info = await findStudy(opened, o.studyName, 60, joining);
      logger.info(`Keeping study "${info.studyName}" online (${opened.storage.getAllTrials(info.studyId).length} trials so far).`);
    }
    logger.info('Replica node running; Ctrl-C to stop.');
    await new Promise<void>((resolveStop) => {
      const stop = (sig: NodeJS.Signals) => {
        logger.info(`Received ${sig}: closing the replica.`);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolveStop();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
  });
}

async function cmdStudies(o: CommonOpts) {
  await withStorage(o, 'query', async (opened) => {
    if (o.join?.length) await settle(opened.storage, null, Math.min(o.wait, 5), 1500);
    const studies = opened.storage.listStudies();
    const rows = studies.map((s) => {
      const trials = opened.storage.getAllTrials(s.studyId);
      return {
        study_name: s.studyName,
        study_id: s.studyId,
        directions: s.directions.join(','),
        n_trials: trials.length,
        n_complete: trials.filter((t) => t.state === 'COMPLETE').length,
        sampler: storedSpec(s, 'sampler')?.name ?? null,
        pruner: storedSpec(s, 'pruner')?.name ?? null,
        created_at: s.createdAt.toISOString(),
      };
    });
    if (o.format === 'json') out(JSON.stringify(rows, null, 2));
    else {
      const cols = ['study_name', 'study_id', 'directions', 'n_trials', 'n_complete', 'sampler', 'pruner', 'created_at'] as const;
      out(table([...cols], rows.map((r) => cols.map((c) => r[c]))));
    }
  });
}

async function cmdTrials(o: CommonOpts) {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const trials = opened.storage.getAllTrials(info.studyId);
    const view = { directions: info.directions, trials, studyName: info.studyName };
    if (o.format === 'json') out(toJson(view));
    else if (o.format === 'csv') out(toCsv(view));
    else out(trials.length ? trialsTable(trials, info.directions) : `study "${info.studyName}" has no trials yet`);
  });
}

/** A read-only view of the study: the Study class is the one place that knows what "best" means. */
function studyOf(opened: OpenedStorage, info: StudyInfo): Promise<Study> {
  return loadStudy({ studyName: info.studyName, storage: opened.storage });
}

async function cmdBestTrial(o: CommonOpts) {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const study = await studyOf(opened, info);
    if (study.isMultiObjective) throw new UsageError(`study "${info.studyName}" has ${info.directions.length} directions; use best-trials for its Pareto front`);
    const best = study.bestTrial;
    printTrials([best], info, o.format ?? 'table', true);
  });
}

async function cmdBestTrials(o: CommonOpts) {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const best = (await studyOf(opened, info)).bestTrials;
    if (best.length === 0) throw new UsageError(`study "${info.studyName}" has no completed trials yet`);
    printTrials(best, info, o.format ?? 'table', false);
  });
}

function printTrials(trials: FrozenTrial[], info: StudyInfo, format: Format, single: boolean): void {
  if (format === 'json') out(JSON.stringify(single ? trialJson(trials[0]!) : trials.map(trialJson), null, 2));
  else out(trialsTable(trials, info.directions));
}

async function cmdExport(o: CommonOpts & { output?: string }) {
  await withStorage(o, 'query', async (opened) => {
    const info = await queryStudy(opened, o);
    const view = { directions: info.directions, trials: opened.storage.getAllTrials(info.studyId), studyName: info.studyName };
    const text = o.format === 'csv' ? toCsv(view) : toJson(view);
    if (o.output) {
      await writeFile(o.output, text);
      logger.info(`Exported ${view.trials.length} trials of study "${info.studyName}" to ${o.output}.`);
    } else out(text);
  });
}

/** Optuna's --search-space JSON ({"x": {"name": "FloatDistribution", "attributes": {...}}}) or peertune's wire form. */
function parseSearchSpace(text: string | undefined) {
  if (text === undefined) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new UsageError(`--search-space must be JSON, e.g. '{"x": {"type": "float", "low": 0, "high": 1}}'; got ${JSON.stringify(text)}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new UsageError('--search-space must be a JSON object from parameter name to distribution');
  const optunaNames: Record<string, string> = { FloatDistribution: 'float', IntDistribution: 'int', CategoricalDistribution: 'categorical' };
  const space: Record<string, ReturnType<typeof distributionFromWire>> = {};
  for (const [name, d] of Object.entries(raw as Record<string, unknown>)) {
    let wire = d as Record<string, unknown>;
    if (wire && typeof wire === 'object' && typeof wire['name'] === 'string' && wire['attributes']) {
      const type = optunaNames[wire['name'] as string];
      if (!type) throw new UsageError(`--search-space: parameter "${name}" has unknown distribution ${JSON.stringify(wire['name'])}; use ${Object.keys(optunaNames).join(', ')}`);
      wire = { type, ...(wire['attributes'] as Record<string, unknown>) };
    }
    space[name] = distributionFromWire(name, wire);
  }
  return space;
}

async function cmdAsk(o: CommonOpts & { searchSpace?: string }) {
  if (!o.dataDir && !o.inMemory) throw new UsageError('ask needs --data-dir: tell must later open the same data dir, because only the peer that asked a trial can tell it');
  const space = parseSearchSpace(o.searchSpace);
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, requireStudyName(o), o.wait, (o.join?.length ?? 0) > 0);
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

async function cmdTell(o: CommonOpts & { trialNumber?: number; values?: number[]; state?: string; skipIfFinished?: boolean }) {
  if (o.trialNumber === undefined) throw new UsageError('--trial-number is required');
  const state = o.state?.toUpperCase() as 'COMPLETE' | 'PRUNED' | 'FAIL' | undefined;
  if (!o.values && (state === undefined || state === 'COMPLETE')) throw new UsageError('tell needs --values (or --state pruned|fail)');
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, requireStudyName(o), o.wait, (o.join?.length ?? 0) > 0);
    const study = await openStudy(opened, info);
    const t = study.trials.find((x) => x.number === o.trialNumber);
    if (!t) throw new UsageError(`study "${info.studyName}" has no trial number ${o.trialNumber}`);
    if (t.state !== 'RUNNING' && t.state !== 'WAITING') {
      if (o.skipIfFinished) {
        logger.info(`Trial ${t.number} is already finished (${t.state}); skipped.`);
        return;
      }
      throw new UsageError(`trial ${t.number} is already finished (${t.state}); pass --skip-if-finished to ignore`);
    }
    const values = o.values === undefined ? null : o.values.length === 1 ? o.values[0]! : o.values;
    const done = await study.tell(o.trialNumber!, values, state ? { state } : {});
    out(`Told trial ${done.number} with ${done.values ? `values: [${done.values.join(', ')}]` : 'no values'} and state: ${done.state}.`);
  });
}

async function cmdDeleteStudy(o: CommonOpts) {
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, requireStudyName(o), o.wait, (o.join?.length ?? 0) > 0);
    await opened.storage.deleteStudy(info.studyId);
    await opened.storage.flush();
    out(`Deleted study "${info.studyName}" (${info.studyId}).`);
  });
}

// ---------------------------------------------------------------------------------------------
// The program.

export function buildProgram(): Command {
  const program = new Command('peertune')
    .description('Decentralized hyperparameter optimization: every worker is a peer with its own replica of the trial history.')
    .version('0.1.0')
    .option('--log-level <level>', 'debug, info, warning, error or silent (default: $PEERTUNE_LOG_LEVEL or info)')
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') })
    .exitOverride();
  program.hook('preAction', (cmd) => {
    const level = cmd.opts()['logLevel'] as string | undefined;
    if (level) {
      try {
        setVerbosity(level as LogLevel);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
    }
  });

  const withHelp = (c: Command) => c.exitOverride().configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

  const create = withHelp(program.command('create-study').description('create a study in this peer\'s data dir and print how others join it'));
  create
    .option('--study-name <name>', 'the study name (default: generated)')
    .option('--direction <direction>', 'minimize or maximize; repeat for a multi-objective study', collectDirections)
    .option('--skip-if-exists', 'reuse an existing study of that name instead of failing')
    .option('--private', 'make a private swarm: write a new swarm key (to --swarm-key, default <data-dir>/swarm.key) that other peers need');
  algorithmOptions(create, false);
  networkOptions(create, 'serve').action((o) => cmdCreateStudy(o));
  create.addHelpText(
    'after',
    `
Example:
  peertune create-study --study-name mlp --direction maximize --sampler tpe --pruner median \\
      --pruner-options '{"nWarmupSteps": 3}' --data-dir ./peer-a
  then: peertune worker --study-name mlp --data-dir ./peer-a -- python3 train.py`,
  );

  const worker = withHelp(
    program
      .command('worker')
      .description('run trials: a module objective (objective.js / .ts, default export) or a command after --')
      .usage('[options] <objective.js> | [options] -- <command...>')
      .argument('[objective...]', 'objective module, or the command after --'),
  );
  worker
    .option('--study-name <name>', 'the study to work on')
    .option('--n-trials <n>', 'trials this worker runs', positiveInt)
    .option('--timeout <seconds>', 'start no trial after this many seconds', positiveSeconds)
    .option('--n-jobs <n>', 'trials in flight at once in this worker', positiveInt, 1)
    .option('--max-trials <n>', 'swarm-wide budget: start no trial once the study has this many (complete, pruned or running)', nonNegativeInt)
    .option('--trial-timeout <seconds>', 'command objectives: kill a trial\'s command after this many seconds (the trial FAILs)', positiveSeconds)
    .option('--wait-for-peers <n>', 'start trials only once this many other peers of the study are online (gives up after 60 s)', positiveInt)
    .option('--no-progress-bar', 'no progress bar (it is shown only on a terminal anyway)')
    .option('--no-show-child-stderr', 'do not forward the command\'s stderr (its tail is still kept on failed trials)')
    .option('--stop-on-error', 'stop when a module objective throws (default: the trial FAILs and the worker goes on)')
    .option('--in-memory', 'a throwaway single-process study, no data dir and no peers (for trying an objective)')
    .option('--direction <direction>', 'with --in-memory: minimize or maximize (repeatable)', collectDirections);
  algorithmOptions(worker, true);
  networkOptions(worker, 'serve').action((objective: string[], o: WorkerOpts) => {
    // commander merges operands from before and after `--`; the command objective is exactly what
    // follows the first `--`, and nothing may come before it.
    const rawArgs = process.argv.slice(2);
    const dash = rawArgs.indexOf('--');
    if (dash < 0) return cmdWorker(o, objective, false);
    const command = rawArgs.slice(dash + 1);
    if (objective.length > command.length) {
      throw new UsageError(`give either an objective module or a command after --, not both (got ${objective.slice(0, objective.length - command.length).join(' ')} before --)`);
    }
    return cmdWorker(o, command, true);
  });

  worker.addHelpText(
    'after',
    `
Examples:
  peertune worker --study-name mlp --data-dir ./peer-a --n-trials 50 objective.ts
  peertune worker --study-name mlp --data-dir ./peer-b --join /ip4/192.168.1.10/tcp/7171/p2p/12D3KooW... \\
      --timeout 3600 --trial-timeout 600 -- python3 train.py --epochs 20
  peertune worker --in-memory --direction minimize --study-name try --n-trials 5 -- ./objective.sh

A command after -- runs once per trial and speaks JSON lines on its stdout/stdin (see
python/peertune_client.py); its stderr is shown, and kept on the trial when it fails.`,
  );

  const node = withHelp(program.command('node').description('a replica-only peer: keeps the history online and runs no trials'));
  node.option('--study-name <name>', 'wait for this study and keep it online');
  networkOptions(node, 'serve').action((o) => cmdNode(o));

  const studies = withHelp(program.command('studies').description('list the studies in a replica'));
  formatOption(networkOptions(studies, 'query'), ['table', 'json'], 'table').action((o) => cmdStudies(o));

  const trials = withHelp(program.command('trials').description('list a study\'s trials'));
  trials.option('--study-name <name>', 'the study');
  formatOption(networkOptions(trials, 'query'), ['table', 'csv', 'json'], 'table').action((o) => cmdTrials(o));

  const best = withHelp(program.command('best-trial').description('the best trial of a single-objective study'));
  best.option('--study-name <name>', 'the study');
  formatOption(networkOptions(best, 'query'), ['table', 'json'], 'table').action((o) => cmdBestTrial(o));

  const bests = withHelp(program.command('best-trials').description('the Pareto front (the best trials) of a study'));
  bests.option('--study-name <name>', 'the study');
  formatOption(networkOptions(bests, 'query'), ['table', 'json'], 'table').action((o) => cmdBestTrials(o));

  const exp = withHelp(program.command('export').description('export a study\'s trials as CSV or JSON'));
  exp.option('--study-name <name>', 'the study').option('-o, --output <file>', 'write to a file instead of stdout');
  formatOption(networkOptions(exp, 'query'), ['csv', 'json'], 'csv').action((o) => cmdExport(o));

  const ask = withHelp(program.command('ask').description('start a trial and print its parameters (as Optuna\'s ask)'));
  ask
    .option('--study-name <name>', 'the study')
    .option('--search-space <json>', 'parameters to sample: {"x": {"type": "float", "low": 0, "high": 1}} (Optuna\'s form works too)')
    .option('--wait <seconds>', 'with --join: how long to wait for the study', positiveSeconds, 10);
  formatOption(networkOptions(ask, 'edit'), ['json', 'table'], 'json').action((o) => cmdAsk(o));

  const tell = withHelp(program.command('tell').description('finish a trial started with ask (same --data-dir)'));
  tell
    .option('--study-name <name>', 'the study')
    .option('--trial-number <n>', 'the trial number ask printed', nonNegativeInt)
    .option('--values <value>', 'objective value (repeat for each direction)', finiteNumber)
    .addOption(new Option('--state <state>', 'final state').choices(['complete', 'pruned', 'fail']))
    .option('--skip-if-finished', 'do nothing if the trial is already finished')
    .option('--wait <seconds>', 'with --join: how long to wait for the study', positiveSeconds, 10);
  networkOptions(tell, 'edit').action((o) => cmdTell(o));

  const del = withHelp(program.command('delete-study').description('delete a study from this replica (and, through replication, from the swarm)'));
  del.option('--study-name <name>', 'the study').option('--wait <seconds>', 'with --join: how long to wait for the study', positiveSeconds, 10);
  networkOptions(del, 'edit').action((o) => cmdDeleteStudy(o));

  return program;
}

async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // Help and version are successes; commander has already printed its one-line error otherwise.
      if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return 0;
      return 2;
    }
    process.stderr.write(`peertune: error: ${describeError(err)}\n`);
    if (process.env['PEERTUNE_DEBUG']) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return exitCodeFor(err);
  }
}

const code = await main(process.argv);
// Let stdout drain (a big export piped into another program), then exit even if a library left a
// handle open: the command's work is done and durable at this point.
process.stdout.write('', () => process.exit(code));
