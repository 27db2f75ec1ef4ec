/**
 * `peertune delete-study`: deletes a study from this peer's replica only. Deletion is not replicated:
 * other peers keep their copies (and a peer that still has it can hand it back on the next sync).
 */
import type { Command } from 'commander';
import { joining, networkOptions, out, subcommand, withStorage, type CommonOpts } from '../args.js';
import { findStudy, studyRef } from '../storage.js';

async function deleteStudyCommand(o: CommonOpts): Promise<void> {
  await withStorage(o, 'edit', async (opened) => {
    const info = await findStudy(opened, studyRef(o), o.wait, joining(o));
    await opened.storage.deleteStudy(info.studyId);
    await opened.storage.flush();
    out(`Deleted study "${info.studyName}" (${info.studyId}) from this replica; other peers keep their copies.`);
  });
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'delete-study', 'delete a study from this peer\'s replica (other peers keep their copies)').option('--study-name <name>', 'the study');
  networkOptions(cmd, 'edit').action((o: CommonOpts) => deleteStudyCommand(o));
}
