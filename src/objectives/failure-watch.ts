/**
 * Stops a worker whose trials all fail the same way. A missing command, a Python without the
 * objective's imports or a script that prints to stdout fails every trial identically; running the
 * whole budget of such failures helps nobody. After `limit` identical failures in a row, with no trial
 * of this worker having succeeded, the watch stops the study and keeps a verdict that says what failed
 * and how to fix it. A run that has succeeded once is never stopped (an occasional crash is the
 * trial's problem, not the setup's).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, realpathSync } from 'node:fs';
import { basename, delimiter, isAbsolute, join } from 'node:path';
import { PeertuneError } from '../errors.js';
import type { Objective, Study } from '../study.js';
import { TrialPruned } from '../trial.js';
import { CommandObjectiveError } from './command.js';

/** The worker stopped because its trials keep failing the same way; the message says how to fix it. */
export class RepeatedFailureError extends PeertuneError {
  override name = 'RepeatedFailureError';
}

/** Where `program` resolves on PATH (null when it does not). */
export function whichOnPath(program: string, path = process.env['PATH'] ?? ''): string | null {
  if (program.includes('/')) return program;
  for (const dir of path.split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function pythonHas(python: string, module: string): boolean {
  const r = spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore', timeout: 30_000 });
  return r.status === 0;
}

/** How to fix a command objective that fails every trial with `err`. */
export function adviceFor(command: readonly string[] | null, err: unknown): string {
  if (!command) return 'fix the objective (its error is above), or pass --stop-on-error to stop at the first failure';
  const program = command[0]!;
  const e = err instanceof CommandObjectiveError ? err : null;
  const text = `${e?.message ?? ''} ${e?.lastError ?? ''}`;
  if (e?.kind === 'spawn' || /ENOENT|command not found|not found$/.test(text)) {
    if (/EACCES/.test(text)) return `${program} is not executable: chmod +x ${program}, or run it through its interpreter (-- sh ${program})`;
    return `${JSON.stringify(program)} was not found${isAbsolute(program) ? '' : ` on PATH (${process.env['PATH'] ?? ''})`}; give its full path, or install it`;
  }
  const missing = /(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'/.exec(text);
  if (missing) {
    const module = missing[1]!.split('.')[0]!;
    const found = whichOnPath(program);
    const where = found ? `${program} (${found}${safeRealpath(found) !== found ? ` -> ${safeRealpath(found)}` : ''})` : program;
    let fix = `install ${module} for it, or run the worker with a Python that has it`;
    if (/^python(3(\.\d+)?)?$/.test(basename(program))) {
      for (const alt of ['/usr/bin/python3', '/usr/local/bin/python3']) {
        if (alt !== found && safeRealpath(alt) !== safeRealpath(found ?? '') && whichOnPath(alt) && pythonHas(alt, module)) {
          fix = `${alt} has it: run the worker with -- ${[alt, ...command.slice(1)].map(shellWord).join(' ')}`;
          break;
        }
      }
    }
    return `the ${where} that runs the objective has no module ${module}; ${fix}`;
  }
  if (e?.kind === 'protocol') return 'the command writes something other than protocol lines on stdout: print logs to stderr, or use python/peertune_client.py, which moves prints to stderr';
  if (e?.kind === 'timeout') return 'every trial ran past --trial-timeout: raise it, or make a trial shorter';
  return 'run the command by hand to see why, or look at the trials\' stderrTail (peertune trials -f json)';
}

function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`;
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

function signature(err: unknown): string {
  if (err instanceof CommandObjectiveError) return `${err.kind}|${err.lastError ?? err.message}`;
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

export class FailureWatch {
  private streak: string | null = null;
  private count = 0;
  private succeeded = false;
  /** Set once the watch stopped the study: what failed and how to fix it. */
  verdict: string | null = null;

  constructor(
    private readonly command: readonly string[] | null,
    private readonly limit = 3,
  ) {}

  wrap(objective: Objective, study: Study): Objective {
    return async (trial) => {
      try {
        const result = await objective(trial);
        this.succeeded = true;
        return result;
      } catch (err) {
        if (err instanceof TrialPruned) this.succeeded = true;
        else this.failed(err, study);
        throw err;
      }
    };
  }

  private failed(err: unknown, study: Study): void {
    const sig = signature(err);
    if (sig === this.streak) this.count++;
    else {
      this.streak = sig;
      this.count = 1;
    }
    if (this.succeeded || this.verdict || this.count < this.limit) return;
    const reason = err instanceof Error ? err.message : String(err);
    this.verdict = `stopped after ${this.count} trials that all failed the same way: ${reason}. Fix: ${adviceFor(this.command, err)}`;
    study.stop();
  }
}
