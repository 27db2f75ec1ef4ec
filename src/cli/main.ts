#!/usr/bin/env node
/**
 * The `peertune` command's entry: parse argv with the program (cli/program.ts), turn a failure into
 * one line on stderr and an exit code (2 for a bad invocation, 1 for anything else; PEERTUNE_DEBUG=1
 * adds the stack), and exit once stdout has drained.
 */
import './polyfills.js';
import { setLogSink } from '../logging.js';
import { describeError, exitCodeFor } from './errors.js';
import { terminalSafe } from './format.js';
import { buildProgram } from './program.js';

async function main(argv: string[]): Promise<number> {
  // Log lines carry study names and params from other peers: one line each, controls escaped.
  setLogSink((line) => process.stderr.write(terminalSafe(line, { oneLine: true }) + '\n'));
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // Help and version are successes; commander has already printed its one-line error otherwise.
      if (code === 'commander.helpDisplayed' || code === 'commander.version' || code === 'commander.help') return 0;
      return 2;
    }
    process.stderr.write(`peertune: error: ${terminalSafe(describeError(err), { oneLine: true })}\n`);
    if (process.env['PEERTUNE_DEBUG']) process.stderr.write(`${(err as Error)?.stack ?? ''}\n`);
    return exitCodeFor(err);
  }
}

const code = await main(process.argv);
// Let stdout drain (a big export piped into another program), then exit even if a library left a
// handle open: the command's work is done and durable at this point.
process.stdout.write('', () => process.exit(code));
