/**
 * Command objectives: any program, in any language, as the objective of a trial. The worker starts
 * the program once per trial and talks to it over a line protocol on the child's stdio: the child
 * writes one JSON request per line on its stdout, the worker answers with one JSON line on the child's
 * stdin. The child's stderr is free for its own logs (forwarded, and its tail kept on failed trials).
 *
 * Requests (child -> worker), each a JSON object with an `op`:
 *   {"op":"suggest","name":"lr","distribution":{"type":"float","low":1e-5,"high":0.1,"log":true}}
 *        -> {"ok":true,"value":0.0012}          (int: {"type":"int","low","high","step","log"};
 *                                                categorical: {"type":"categorical","choices":[...]})
 *   {"op":"report","value":0.31,"step":4}     -> {"ok":true,"prune":false}
 *   {"op":"should_prune"}                     -> {"ok":true,"prune":true}
 *   {"op":"set_user_attr","key":"k","value":<any JSON>}  -> {"ok":true}
 *   {"op":"result","value":0.12} or {"op":"result","values":[0.1,3]}   final; -> {"ok":true}
 *   {"op":"pruned"}                           final: the trial ends PRUNED; -> {"ok":true}
 *   {"op":"fail","reason":"..."}              final: the trial ends FAIL;  -> {"ok":true}
 * A line that is just a JSON number or array of numbers is a result too, so `echo 0.5` is a valid
 * objective. A request that is well formed but refused (a bad distribution, say) gets
 * {"ok":false,"error":"..."} and the child decides what to do. Anything else on stdout (not JSON, not
 * an object with a known op) is a protocol violation: the child is killed and the trial FAILs.
 *
 * The child also gets PEERTUNE_PROTOCOL=1, PEERTUNE_STUDY_NAME, PEERTUNE_TRIAL_NUMBER and
 * PEERTUNE_TRIAL_ID in its environment. A trial FAILs, with the reason in the trial's `failReason`
 * system attribute and the last lines of stderr in `stderrTail`, when the child exits non-zero or on a
 * signal, exits without a final message, breaks the protocol, or runs past the per-trial timeout.
 * The child runs in its own process group so a timeout also stops anything it started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  DistributionError,
  categoricalDistribution,
  floatDistribution,
  intDistribution,
  type Distribution,
  type ParamValue,
} from '../distributions.js';
import { logger } from '../logging.js';
import type { Objective } from '../study.js';
import { TrialPruned, type Trial } from '../trial.js';

export const PROTOCOL_VERSION = 1;

/** Why a command objective's trial failed; `optimize` catches it so the worker keeps going. */
export class CommandObjectiveError extends Error {
  override name = 'CommandObjectiveError';
}

export interface CommandObjectiveOptions {
  /** The program and its arguments, e.g. ['python3', 'train.py', '--epochs', '10']. */
  command: readonly string[];
  cwd?: string;
  /** Extra environment for the child, on top of this process's. */
  env?: Record<string, string>;
  /** Seconds a trial may run before the child is killed and the trial FAILs. */
  trialTimeout?: number;
  /** Each stderr line of the child (default: logged at debug level with the trial number). */
  onStderr?: (line: string, trialNumber: number) => void;
  /** How many stderr lines to keep on a failed trial (default 20). */
  stderrTailLines?: number;
  /** Seconds to wait for the child to exit after its final message before killing it (default 10). */
  exitGrace?: number;
}

const MAX_LINE = 1 << 20;
const KILL_GRACE_MS = 2000;

type Outcome =
  | { kind: 'values'; values: number[] }
  | { kind: 'pruned' }
  | { kind: 'fail'; reason: string };

/** Children still running, so a worker that is told to stop can take them down with it. */
const liveChildren = new Set<ChildProcess>();

/** Kills every running command objective (process groups included); for shutdown paths. */
export function killAllCommandObjectives(signal: NodeJS.Signals = 'SIGTERM'): void {
  for (const child of liveChildren) killGroup(child, signal);
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

/** Builds a distribution from its wire form, naming the parameter in any error. */
export function distributionFromWire(name: string, raw: unknown): Distribution {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DistributionError(`parameter "${name}": distribution must be an object with a "type", got ${JSON.stringify(raw)}`);
  }
  const r = raw as Record<string, unknown>;
  const num = (k: string): number => r[k] as number;
  switch (r['type']) {
    case 'float':
      return floatDistribution(name, num('low'), num('high'), { log: r['log'] === true, step: (r['step'] as number | null | undefined) ?? null }, logger.warn);
    case 'int':
      return intDistribution(name, num('low'), num('high'), { log: r['log'] === true, step: (r['step'] as number | undefined) ?? 1 }, logger.warn);
    case 'categorical':
      return categoricalDistribution(name, r['choices'] as ParamValue[]);
    default:
      throw new DistributionError(`parameter "${name}": unknown distribution type ${JSON.stringify(r['type'])}; use "float", "int" or "categorical"`);
  }
}

function isNumberList(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

function clip(s: string, n = 200): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/**
 * An objective that runs `command` once per trial and speaks the line protocol with it. Use it with
 * `study.optimize(commandObjective({...}), { catch: [CommandObjectiveError] })` so a failing child
 * fails its trial and the loop goes on.
 */
export function commandObjective(opts: CommandObjectiveOptions): Objective {
  if (!Array.isArray(opts.command) || opts.command.length === 0 || typeof opts.command[0] !== 'string' || opts.command[0] === '') {
    throw new CommandObjectiveError('command objective: give the program to run, e.g. ["python3", "train.py"]');
  }
  if (opts.trialTimeout !== undefined && !(typeof opts.trialTimeout === 'number' && opts.trialTimeout > 0)) {
    throw new CommandObjectiveError(`command objective: trialTimeout must be a positive number of seconds, got ${opts.trialTimeout}`);
  }
  return (trial) => runCommandTrial(trial, opts);
}

async function runCommandTrial(trial: Trial, opts: CommandObjectiveOptions): Promise<number[]> {
  const number = trial.number;
  const tailMax = opts.stderrTailLines ?? 20;
  const onStderr = opts.onStderr ?? ((line: string, n: number) => logger.debug(`[trial ${n}] ${line}`));
  const [program, ...args] = opts.command;
  const child = spawn(program!, args, {
    cwd: opts.cwd,
    env: {
      ...process.env,
      ...opts.env,
      PEERTUNE_PROTOCOL: String(PROTOCOL_VERSION),
      PEERTUNE_STUDY_NAME: trial.study.studyName,
      PEERTUNE_TRIAL_NUMBER: String(number),
      PEERTUNE_TRIAL_ID: trial.trialId,
    },
    stdio: ['pipe', 'pipe', 'pipe'],
    // Own process group: a timeout or shutdown kills the whole tree (a shell and what it started).
    detached: true,
  });
  liveChildren.add(child);

  const tail: string[] = [];
  let outcome: Outcome | null = null;
  let lineNo = 0;
  let killTimer: NodeJS.Timeout | null = null;
  let graceTimer: NodeJS.Timeout | null = null;

  const stop = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    killGroup(child, signal);
    killTimer ??= setTimeout(() => killGroup(child, 'SIGKILL'), KILL_GRACE_MS);
  };
  const decide = (o: Outcome): void => {
    if (outcome) return;
    outcome = o;
    if (o.kind === 'fail') {
      stop();
    } else {
      // A well-behaved child exits right after its final message; do not let one linger forever.
      graceTimer = setTimeout(() => stop(), (opts.exitGrace ?? 10) * 1000);
    }
  };
  const reply = (msg: Record<string, unknown>): void => {
    if (child.stdin && !child.stdin.destroyed && child.stdin.writable) child.stdin.write(JSON.stringify(msg) + '\n');
  };

  // The child may exit without reading its stdin; a broken pipe there is not our failure.
  child.stdin?.on('error', () => {});

  const timeoutTimer =
    opts.trialTimeout !== undefined
      ? setTimeout(() => decide({ kind: 'fail', reason: `the command ran past the per-trial timeout of ${opts.trialTimeout} s and was killed` }), opts.trialTimeout * 1000)
      : null;

  const handle = (line: string): void => {
    lineNo++;
    if (outcome) return;
    if (line.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      decide({ kind: 'fail', reason: `the command printed a line that is not protocol JSON (line ${lineNo} of stdout: ${JSON.stringify(clip(line))}); log to stderr instead` });
      return;
    }
    if (typeof msg === 'number') msg = { op: 'result', value: msg };
    else if (isNumberList(msg)) msg = { op: 'result', values: msg };
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof (msg as { op?: unknown }).op !== 'string') {
      decide({ kind: 'fail', reason: `protocol line ${lineNo} is not a request object with an "op": ${JSON.stringify(clip(line))}` });
      return;
    }
    const m = msg as Record<string, unknown>;
    try {
      switch (m['op']) {
        case 'suggest': {
          const name = m['name'];
          if (typeof name !== 'string' || name === '') throw new DistributionError('suggest needs a non-empty "name"');
          reply({ ok: true, value: trial.suggest(name, distributionFromWire(name, m['distribution'])) });
          return;
        }
        case 'report': {
          trial.report(m['value'] as number, m['step'] as number);
          reply({ ok: true, prune: trial.shouldPrune() });
          return;
        }
        case 'should_prune':
          reply({ ok: true, prune: trial.shouldPrune() });
          return;
        case 'set_user_attr': {
          if (typeof m['key'] !== 'string' || m['key'] === '') throw new Error('set_user_attr needs a non-empty "key"');
          trial.setUserAttr(m['key'], m['value'] ?? null);
          reply({ ok: true });
          return;
        }
        case 'result': {
          const values = m['values'] !== undefined ? m['values'] : [m['value']];
          if (!Array.isArray(values)) throw new Error('"values" must be an array of numbers');
          reply({ ok: true });
          // Validation of the numbers (count, NaN) is the study's: it fails the trial with the reason.
          decide({ kind: 'values', values: values as number[] });
          return;
        }
        case 'pruned':
          reply({ ok: true });
          decide({ kind: 'pruned' });
          return;
        case 'fail':
          reply({ ok: true });
          decide({ kind: 'fail', reason: `the command reported failure: ${clip(String(m['reason'] ?? 'no reason given'), 500)}` });
          return;
        default:
          decide({ kind: 'fail', reason: `protocol line ${lineNo} has unknown op ${JSON.stringify(m['op'])}; valid: suggest, report, should_prune, set_user_attr, result, pruned, fail` });
      }
    } catch (err) {
      reply({ ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  };

  // readline would buffer an endless line whole; watch the bytes since the last newline ourselves.
  let pendingBytes = 0;
  child.stdout!.on('data', (chunk: Buffer) => {
    const nl = chunk.lastIndexOf(10);
    pendingBytes = nl < 0 ? pendingBytes + chunk.length : chunk.length - nl - 1;
    if (pendingBytes > MAX_LINE) decide({ kind: 'fail', reason: `the command wrote more than ${MAX_LINE} bytes on stdout without a newline` });
  });
  const stdoutDone = new Promise<void>((resolve) => {
    const rl = createInterface({ input: child.stdout!, crlfDelay: Infinity });
    rl.on('line', (line) => {
      if (line.length > MAX_LINE) {
        decide({ kind: 'fail', reason: `protocol line ${lineNo + 1} is longer than ${MAX_LINE} bytes` });
        return;
      }
      handle(line);
    });
    rl.on('close', () => resolve());
  });
  const stderrDone = new Promise<void>((resolve) => {
    const rl = createInterface({ input: child.stderr!, crlfDelay: Infinity });
    rl.on('line', (line) => {
      tail.push(clip(line, 500));
      if (tail.length > tailMax) tail.shift();
      onStderr(line, number);
    });
    rl.on('close', () => resolve());
  });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err }));
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // Whatever the child started in its group goes with it, so the pipes close and nothing leaks.
  killGroup(child, 'SIGKILL');
  await Promise.race([Promise.all([stdoutDone, stderrDone]), new Promise((r) => setTimeout(r, 1000).unref())]);
  if (timeoutTimer) clearTimeout(timeoutTimer);
  if (killTimer) clearTimeout(killTimer);
  if (graceTimer) clearTimeout(graceTimer);
  liveChildren.delete(child);

  // Set from the stream callbacks above; TypeScript cannot see that, so re-read it through a cast.
  const decided = outcome as Outcome | null;
  let final: Outcome;
  if (exit.spawnError) {
    final = { kind: 'fail', reason: `could not start ${JSON.stringify(program)}: ${exit.spawnError.message}` };
  } else if (decided !== null) {
    final = decided;
  } else if (exit.code !== 0) {
    final = { kind: 'fail', reason: exit.signal ? `the command was killed by ${exit.signal}` : `the command exited with code ${exit.code}` };
  } else {
    final = { kind: 'fail', reason: 'the command exited with code 0 without sending a result' };
  }

  const { storage, studyId } = trial.study;
  if (exit.code !== null) storage.setTrialSystemAttr(studyId, trial.trialId, 'exitCode', exit.code);
  if (final.kind === 'pruned') throw new TrialPruned(`trial ${number} was pruned by its command`);
  if (final.kind === 'fail') {
    storage.setTrialSystemAttr(studyId, trial.trialId, 'stderrTail', tail.join('\n'));
    throw new CommandObjectiveError(final.reason);
  }
  return final.values;
}
