/** `peertune node`: a replica-only peer that keeps a study's history online and runs no trials. */
import type { Command } from 'commander';
import { logger } from '../../logging.js';
import { joinAddresses, joining, networkOptions, out, subcommand, withStorage, type CommonOpts } from '../args.js';
import { findStudy, studyRef } from '../storage.js';

async function nodeCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'serve', async (opened) => {
    if (opened.peerId) out(`peer id: ${opened.peerId}`);
    for (const a of joinAddresses(opened)) out(`join: ${a}`);
    if (o.studyName || o.studyId) {
      const info = await findStudy(opened, studyRef(o), 60, joining(o));
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

export function register(program: Command): void {
  const cmd = subcommand(program, 'node', 'a replica-only peer: keeps the history online and runs no trials').option('--study-name <name>', 'wait for this study and keep it online');
  networkOptions(cmd, 'serve').action((o: CommonOpts) => nodeCommand(o));
}
