/**
 * The `peertune` program: global options and the subcommands, one module each under commands/ (its
 * options next to its handler). Building the program runs nothing; cli/main.ts parses argv with it.
 * A new command is one module exporting `register(program)` and one line in COMMANDS.
 */
import { Command } from 'commander';
import { setVerbosity, type LogLevel } from '../logging.js';
import * as askTell from './commands/ask-tell.js';
import * as checkpoints from './commands/checkpoints.js';
import * as createStudy from './commands/create-study.js';
import * as dashboard from './commands/dashboard.js';
import * as deleteStudy from './commands/delete-study.js';
import * as enqueue from './commands/enqueue.js';
import * as node from './commands/node.js';
import * as pbtPolicy from './commands/pbt-policy.js';
import * as query from './commands/query.js';
import * as serve from './commands/serve.js';
import * as worker from './commands/worker.js';
import { UsageError } from './errors.js';

/** Each registers its subcommands, in the order `peertune --help` lists them. */
const COMMANDS: { register(program: Command): void }[] = [
  createStudy,
  worker,
  node,
  query,
  askTell,
  enqueue,
  checkpoints,
  deleteStudy,
  dashboard,
  pbtPolicy,
  serve,
];

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
  for (const c of COMMANDS) c.register(program);
  return program;
}
