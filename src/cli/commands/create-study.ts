/** `peertune create-study`: a study in this peer's data dir, and the addresses others join it by. */
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import type { StudyDirection } from '../../storage/storage.js';
import { logger } from '../../logging.js';
import { algorithmOptions, collectDirections, joinAddresses, networkOptions, out, specsFrom, subcommand, withStorage, type AlgorithmFlags, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';
import { createPruner, createSampler } from '../registry.js';

interface CreateStudyOpts extends CommonOpts, AlgorithmFlags {
  direction?: StudyDirection[];
  skipIfExists?: boolean;
  private?: boolean;
}

async function createStudyCommand(o: CreateStudyOpts): Promise<void> {
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
    const { generateSwarmKey, writeSwarmKeyFile } = await import('../../security/index.js');
    o.swarmKey ??= join(resolve(o.dataDir ?? process.env['PEERTUNE_DATA_DIR'] ?? './peertune-data'), 'swarm.key');
    await writeSwarmKeyFile(o.swarmKey, generateSwarmKey());
  }
  await withStorage(o, 'serve', async (opened) => {
    const name = o.studyName ?? `study-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    // Only a study of this name created here counts as existing: one that merely arrived from peers
    // (anyone can create any name) is not reused by --skip-if-exists, and does not stop this one (issue 15 F3).
    const existing = opened.storage.listStudies().find((s) => s.studyName === name && (s.creator === undefined || s.creator === opened.peerId)) ?? null;
    if (existing && !o.skipIfExists) {
      throw new UsageError(`a study named "${name}" already exists in ${opened.dataDir ?? 'this storage'}; pass --skip-if-exists to reuse it`);
    }
    let info = existing;
    if (!info) {
      const study = await opened.storage.createStudy({ studyName: name, directions: dirs });
      opened.storage.setStudySystemAttr(study.studyId, 'sampler', samplerSpec);
      opened.storage.setStudySystemAttr(study.studyId, 'pruner', prunerSpec);
      await opened.storage.flush();
      info = opened.storage.listStudies().find((s) => s.studyId === study.studyId)!;
      logger.info(`A new study created in storage with name: ${name}`);
    }
    out(`study: ${info.studyName}`);
    out(`study id: ${info.studyId}`);
    out(`directions: ${info.directions.join(', ')}`);
    if (opened.peerId) out(`peer id: ${opened.peerId}`);
    for (const a of joinAddresses(opened)) out(`join: ${a}`);
    if (o.private) out(`swarm key: ${o.swarmKey} (copy it to every other peer and pass --swarm-key <file>)`);
  });
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'create-study', 'create a study in this peer\'s data dir and print how others join it')
    .option('--study-name <name>', 'the study name (default: generated)')
    .option('--direction <direction>', 'minimize or maximize; repeat for a multi-objective study', collectDirections)
    .option('--skip-if-exists', 'reuse an existing study of that name instead of failing')
    .option('--private', 'make a private swarm: write a new swarm key (to --swarm-key, default <data-dir>/swarm.key) that other peers need');
  algorithmOptions(cmd, { overriding: false });
  networkOptions(cmd, 'serve').action((o: CreateStudyOpts) => createStudyCommand(o));
  cmd.addHelpText(
    'after',
    `
Example:
  peertune create-study --study-name mlp --direction maximize --sampler tpe --pruner median \\
      --pruner-options '{"nWarmupSteps": 3}' --data-dir ./peer-a
  then: peertune worker --study-name mlp --data-dir ./peer-a -- python3 train.py`,
  );
}
