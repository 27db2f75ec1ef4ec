/**
 * Trial checkpoints from the shell (issue 9): `peertune checkpoints` lists the kept checkpoint
 * references of a study (or of one trial) with the peers that hold a confirmed copy, and
 * `peertune checkpoint get --trial N -o DIR` writes one into DIR, fetched from whichever peer holds it
 * (with --join) or from this replica's blob store. Without --study-name, a replica that holds a
 * single study means that one.
 */
import type { Command } from 'commander';
import { cp, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { logger } from '../../logging.js';
import type { CheckpointRef } from '../../checkpoints/refs.js';
import type { FrozenTrial, StudyInfo } from '../../storage/storage.js';
import { loadStudy, type Study } from '../../study.js';
import { formatOption, joining, networkOptions, nonNegativeInt, out, queryStudy, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { table } from '../format.js';
import { settle, type OpenedStorage } from '../storage.js';

interface CheckpointOpts extends CommonOpts {
  trial?: number;
}

async function studyFor(opened: OpenedStorage, o: CommonOpts): Promise<{ info: StudyInfo; study: Study }> {
  let info: StudyInfo;
  if (!o.studyName && !o.studyId) {
    if (joining(o)) await settle(opened.storage, null, Math.min(o.wait, 5), 1500);
    const all = opened.storage.listStudies();
    if (all.length !== 1) throw new UsageError(`--study-name (or --study-id) is required: this replica holds ${all.length} studies${all.length ? ` (${all.map((s) => s.studyName).slice(0, 10).join(', ')})` : ''}`);
    info = all[0]!;
    if (joining(o)) await settle(opened.storage, info.studyId, Math.min(o.wait, 5));
  } else info = await queryStudy(opened, o);
  return { info, study: await loadStudy({ studyName: info.studyName, studyId: info.studyId, storage: opened.storage }) };
}

function trialByNumber(study: Study, n: number): FrozenTrial {
  const t = study.trials.find((x) => x.number === n);
  if (!t) throw new UsageError(`study "${study.studyName}" has no trial ${n} (it has ${study.trials.length} trials)`);
  return t;
}

const shortPeer = (p: string): string => (p.length > 12 ? `…${p.slice(-8)}` : p);

function rowOf(t: FrozenTrial, r: CheckpointRef) {
  return {
    trial: t.number,
    state: t.state,
    seq: r.seq,
    step: r.step,
    kind: r.kind,
    size_bytes: r.size,
    metrics: r.metrics,
    holders: r.holders,
    created_at: new Date(r.createdAt).toISOString(),
    hash: r.hash,
  };
}

async function listCommand(o: CheckpointOpts): Promise<void> {
  await withStorage(o, 'query', async (opened) => {
    const { study } = await studyFor(opened, o);
    const trials = o.trial === undefined ? study.trials : [trialByNumber(study, o.trial)];
    const rows = trials.flatMap((t) => t.checkpoints.map((r) => rowOf(t, r)));
    if (o.format === 'json') return out(JSON.stringify(rows, null, 2));
    if (rows.length === 0) return out(o.trial === undefined ? `study "${study.studyName}" has no checkpoints` : `trial ${o.trial} has no checkpoints`);
    const cols = ['trial', 'state', 'seq', 'step', 'kind', 'size_bytes', 'metrics', 'holders', 'created_at', 'hash'];
    out(table(cols, rows.map((r) => [r.trial, r.state, r.seq, r.step, r.kind, r.size_bytes, JSON.stringify(r.metrics), r.holders.map(shortPeer).join(' '), r.created_at, r.hash.slice(0, 12)])));
  });
}

async function getCommand(o: CheckpointOpts & { output?: string; seq?: number }): Promise<void> {
  if (o.trial === undefined) throw new UsageError('--trial N is required (the trial number, as `peertune trials` prints)');
  if (!o.output) throw new UsageError('-o, --output DIR is required (where to write the checkpoint)');
  const dest = path.resolve(o.output);
  const existing = await stat(dest).catch(() => null);
  if (existing && !existing.isDirectory()) throw new UsageError(`-o ${o.output} exists and is not a directory`);
  await withStorage(o, 'query', async (opened) => {
    const { study } = await studyFor(opened, o);
    const t = trialByNumber(study, o.trial!);
    const m = await study.checkpoints();
    let ck;
    if (o.seq !== undefined) {
      const ref = t.checkpoints.find((r) => r.seq === o.seq);
      if (!ref) throw new UsageError(`trial ${o.trial} has no kept checkpoint ${o.seq} (kept: ${t.checkpoints.map((r) => r.seq).join(', ') || 'none'})`);
      ck = await m.materialize(ref);
    } else ck = await m.get(study.studyId, t.trialId);
    if (!ck) throw new UsageError(`trial ${o.trial} has no checkpoint (nor does a trial it retries or resumes)`);
    await mkdir(dest, { recursive: true });
    const target = (await stat(ck.path)).isDirectory() ? dest : path.join(dest, path.basename(ck.path));
    await cp(ck.path, target, { recursive: true, force: true });
    logger.info(`Wrote checkpoint of trial ${o.trial} (step ${ck.step ?? '-'}) to ${target}.`);
    out(JSON.stringify({ path: target, step: ck.step, metrics: ck.metrics, trial_id: ck.trialId }));
  });
}

export function register(program: Command): void {
  const list = subcommand(program, 'checkpoints', 'list a study\'s kept checkpoints and the peers holding them')
    .option('--study-name <name>', 'the study (optional when the replica holds one study)')
    .option('--trial <number>', 'only this trial\'s checkpoints', nonNegativeInt);
  formatOption(networkOptions(list, 'query'), ['table', 'json'], 'table').action((o: CheckpointOpts) => listCommand(o));

  const group = subcommand(program, 'checkpoint', 'one checkpoint: `checkpoint get`');
  const get = subcommand(group, 'get', 'write a trial\'s latest checkpoint (fetched from a peer that holds it) into a directory')
    .option('--study-name <name>', 'the study (optional when the replica holds one study)')
    .option('--trial <number>', 'the trial number', nonNegativeInt)
    .option('--seq <n>', 'a kept checkpoint other than the latest (its seq, as `checkpoints` lists)', nonNegativeInt)
    .option('-o, --output <dir>', 'the directory to write it to');
  networkOptions(get, 'query').action((o: CheckpointOpts & { output?: string; seq?: number }) => getCommand(o));
}
