/**
 * What every subcommand shares: the argument parsers (commander turns InvalidArgumentError into one
 * line naming the option), the option groups (network, format, sampler/pruner), and the few steps
 * every handler takes (open the storage, find the study, print). A command module adds its own
 * options next to its handler; only what two or more commands use lives here.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import type { StudyDirection, StudyInfo } from '../storage/storage.js';
import { loadStudy, type Study, type CreateStudyOptions } from '../study.js';
import { UsageError } from './errors.js';
import { terminalSafe } from './format.js';
import type { Format } from './format.js';
import { createPruner, createSampler, parseOptionsJson, storedSpec, type AlgorithmSpec } from './registry.js';
import { findStudy, openStorage, settle, studyRef, type NetworkFlags, type OpenedStorage, type Role } from './storage.js';

// ---------------------------------------------------------------------------------------------
// Argument parsers.

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got ${JSON.stringify(v)}`);
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`expected a non-negative integer, got ${JSON.stringify(v)}`);
  return n;
}

export function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected a positive number of seconds, got ${JSON.stringify(v)}`);
  return n;
}

export function direction(v: string): StudyDirection {
  if (v !== 'minimize' && v !== 'maximize') throw new InvalidArgumentError(`expected "minimize" or "maximize", got ${JSON.stringify(v)}`);
  return v;
}

export function collect(v: string, prev: string[] | undefined): string[] {
  return [...(prev ?? []), v];
}

export function collectDirections(v: string, prev: StudyDirection[] | undefined): StudyDirection[] {
  return [...(prev ?? []), direction(v)];
}

export function finiteNumbers(v: string, prev: number[] | undefined): number[] {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a finite number, got ${JSON.stringify(v)}`);
  return [...(prev ?? []), n];
}

// ---------------------------------------------------------------------------------------------
// Option groups.

export interface CommonOpts extends NetworkFlags {
  studyName?: string;
  /** --study-id: chooses the study by id (several studies may share a name). */
  studyId?: string;
  /** Seconds to wait for the study from --join peers (query and edit commands). */
  wait: number;
  format?: Format;
}

/** A subcommand with the program's one-line error output and no process.exit of its own. */
export function subcommand(program: Command, name: string, description: string): Command {
  return program
    .command(name)
    .description(description)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });
}

/**
 * The network flags every subcommand takes. `serve` commands keep a data dir and listen; `query` and
 * `edit` commands read an existing replica, or one synced from --join peers (and wait for it).
 */
export function networkOptions(cmd: Command, role: Role): Command {
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
    .option('--allow-peer <peerId>', 'accept only these peer ids (repeatable)', collect)
    .option('--ignore-peer <peerId>', 'read the study as if this peer\'s trials did not exist (repeatable; samplers, pruners and budgets follow)', collect)
    .option('--trust-peer <peerId>', 'read only trials owned by these peers and this one (repeatable; an authorship allowlist)', collect);
  // Every command that takes --study-name can choose the study by id instead (issue 15 F3).
  if (cmd.name() !== 'create-study' && cmd.options.some((x) => x.long === '--study-name')) cmd.option('--study-id <id>', 'the study by id (as `peertune studies` prints), when several studies share a name');
  if (role !== 'serve') cmd.option('--wait <seconds>', 'with --join: how long to wait for the study to arrive from peers', positiveSeconds, 10);
  return cmd;
}

export function formatOption(cmd: Command, choices: Format[], dflt: Format): Command {
  return cmd.addOption(new Option('-f, --format <format>', 'output format').choices(choices).default(dflt));
}

/** --sampler/--pruner and their JSON options; `overriding` says they override the study's choice. */
export function algorithmOptions(cmd: Command, { overriding }: { overriding: boolean }): Command {
  const when = overriding ? ' (overrides the study\'s choice on this peer)' : '';
  return cmd
    .option('--sampler <name>', `sampler: tpe, random, grid, nsga2${when}`)
    .option('--sampler-options <json>', 'sampler options as JSON, e.g. \'{"seed": 1}\'')
    .option('--pruner <name>', `pruner: median, percentile, successive-halving, hyperband, threshold, patient, nop${when}`)
    .option('--pruner-options <json>', 'pruner options as JSON, e.g. \'{"nWarmupSteps": 5}\'');
}

export interface AlgorithmFlags {
  sampler?: string;
  samplerOptions?: string;
  pruner?: string;
  prunerOptions?: string;
}

export function specsFrom(o: AlgorithmFlags): { sampler?: AlgorithmSpec; pruner?: AlgorithmSpec } {
  if (o.samplerOptions !== undefined && o.sampler === undefined) throw new UsageError('--sampler-options needs --sampler');
  if (o.prunerOptions !== undefined && o.pruner === undefined) throw new UsageError('--pruner-options needs --pruner');
  return {
    sampler: o.sampler ? { name: o.sampler, options: parseOptionsJson('--sampler-options', o.samplerOptions) } : undefined,
    pruner: o.pruner ? { name: o.pruner, options: parseOptionsJson('--pruner-options', o.prunerOptions) } : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Steps every handler takes.

export function requireStudyName(o: { studyName?: string }): string {
  if (!o.studyName) throw new UsageError('--study-name is required');
  return o.studyName;
}

/** Whether the flags ask this process to find peers (so a missing study may still arrive). */
export function joining(o: NetworkFlags): boolean {
  return (o.join?.length ?? 0) > 0 || Boolean(o.mdns);
}

/** Opens the storage, runs `body`, and always closes the storage (so no process is left hanging). */
export async function withStorage<T>(o: NetworkFlags, role: Role, body: (opened: OpenedStorage) => Promise<T>): Promise<T> {
  const opened = await openStorage(o, role);
  try {
    return await body(opened);
  } finally {
    await opened.close();
  }
}

/** A query command's study: from the local replica, or synced from `--join` peers first. */
export async function queryStudy(opened: OpenedStorage, o: CommonOpts): Promise<StudyInfo> {
  const fromPeers = joining(o);
  const info = await findStudy(opened, studyRef(o), o.wait, fromPeers);
  if (fromPeers) await settle(opened.storage, info.studyId, Math.min(o.wait, 5));
  return info;
}

/** The study with the sampler and pruner it was created with (or the given overrides). */
export async function openStudy(opened: OpenedStorage, info: StudyInfo, overrides: { sampler?: AlgorithmSpec; pruner?: AlgorithmSpec } = {}, extra: Pick<CreateStudyOptions, 'checkpointConfig' | 'maxRetries' | 'retryFailed'> = {}): Promise<Study> {
  const samplerSpec = overrides.sampler ?? storedSpec(info, 'sampler');
  const prunerSpec = overrides.pruner ?? storedSpec(info, 'pruner');
  return loadStudy({
    studyName: info.studyName,
    studyId: info.studyId,
    storage: opened.storage,
    sampler: samplerSpec ? await createSampler(samplerSpec) : undefined,
    pruner: prunerSpec ? await createPruner(prunerSpec) : undefined,
    ...extra,
  });
}

/**
 * Prints one result to stdout. Everything printed may hold strings from the network (study names,
 * params, attrs), so control characters are escaped on the way out (a peer cannot move the cursor or
 * forge a log line).
 */
export function out(text: string): void {
  const safe = terminalSafe(text);
  process.stdout.write(safe.endsWith('\n') ? safe : safe + '\n');
}

/** The addresses worth printing first: LAN ones before loopback. */
export function joinAddresses(opened: OpenedStorage): string[] {
  const all = opened.multiaddrs();
  const loop = (a: string) => a.startsWith('/ip4/127.') || a.startsWith('/ip6/::1/');
  return [...all.filter((a) => !loop(a)), ...all.filter(loop)];
}
