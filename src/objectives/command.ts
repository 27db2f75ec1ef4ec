/**
 * Command objectives: any program, in any language, as the objective of a trial. The worker talks to
 * the program over a line protocol on the child's stdio: the child writes one JSON request per line
 * on its stdout, the worker answers with one JSON line on the child's stdin. The child's stderr is
 * free for its own logs (forwarded, and its tail kept on failed trials).
 *
 * Protocol version 2 (persistent): the child's first line is {"op":"hello","protocol":2}; the worker
 * answers {"ok":true,"protocol":2}. Then the child asks for work with {"op":"next"}, and the worker
 * answers, when this job slot has a trial, {"ok":true,"trial":{"number":3,"trial_id":"...",
 * "study_name":"..."}}, or {"ok":true,"stop":true} when there is no more work (the child then exits).
 * One process runs trial after trial, so imports (torch, sklearn) and data loading are paid once per
 * job slot instead of once per trial. A crash, a non-zero exit, a protocol violation or the per-trial
 * timeout fails that trial only; the next trial starts a new process.
 *
 * Version 1 (one process per trial): a child whose first line is anything but hello runs exactly one
 * trial (the one in PEERTUNE_TRIAL_NUMBER / PEERTUNE_TRIAL_ID) and exits. Old scripts keep working.
 *
 * Requests within a trial (child -> worker), each a JSON object with an `op`:
 *   {"op":"suggest","name":"lr","distribution":{"type":"float","low":1e-5,"high":0.1,"log":true}}
 *        -> {"ok":true,"value":0.0012}          (int: {"type":"int","low","high","step","log"};
 *                                                categorical: {"type":"categorical","choices":[...]})
 *   {"op":"report","value":0.31,"step":4}     -> {"ok":true,"prune":false}
 *   {"op":"should_prune"}                     -> {"ok":true,"prune":true}
 *   {"op":"set_user_attr","key":"k","value":<any JSON>}  -> {"ok":true}
 *   {"op":"save_checkpoint","path":"ckpt/","step":3,"metrics":{"acc":0.9}}
 *        -> {"ok":true,"checkpoint":{"seq":4,"step":3,"hash":"...","size":123,"kind":"dir"}}
 *                                                (the path is relative to the command's working dir;
 *                                                 the worker has a copy once this answer arrives)
 *   {"op":"get_checkpoint"}                   -> {"ok":true,"checkpoint":{"path":"...","step":3,
 *                                                "metrics":{...},"trial_id":"..."}} or {"ok":true,"checkpoint":null}
 *                                                (this trial's latest, else the latest of the trial it
 *                                                 retries or resumes, fetched from a peer that holds it)
 *   {"op":"result","value":0.12} or {"op":"result","values":[0.1,3]}   final; -> {"ok":true}
 *   {"op":"pruned"}                           final: the trial ends PRUNED; -> {"ok":true}
 *   {"op":"fail","reason":"..."}              final: the trial ends FAIL;  -> {"ok":true}
 * A line that is just a JSON number or array of numbers is a result too, so `echo 0.5` is a valid
 * objective. A request that is well formed but refused (a bad distribution, say) gets
 * {"ok":false,"error":"..."} and the child decides what to do. Anything else on stdout (not JSON, not
 * an object with a known op) is a protocol violation: the child is killed and the trial FAILs.
 *
 * The child gets PEERTUNE_PROTOCOL=2, PEERTUNE_STUDY_NAME, PEERTUNE_TRIAL_NUMBER and PEERTUNE_TRIAL_ID
 * (of the first trial it runs), and PEERTUNE_JOB_SLOT; with device slots, CUDA_VISIBLE_DEVICES. A
 * failed trial keeps the reason in its `failReason` system attribute (naming the child's last
 * exception line when it crashed) and the last lines of stderr in `stderrTail`.
 *
 * Every child runs under a small supervisor (a Node process in its own process group): the command
 * inherits the supervisor's stdio directly (no copying), and the supervisor holds one more pipe to the
 * worker. When the worker dies, even by SIGKILL, that pipe closes and the supervisor kills its whole
 * group at once, so no trial outlives its worker.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
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
import { PeertuneError } from '../errors.js';
import { getCheckpointRequest, saveCheckpointRequest } from './checkpoint-ops.js';

export const PROTOCOL_VERSION = 2;

/** Why a command objective's trial failed; `optimize` catches it so the worker keeps going. */
export class CommandObjectiveError extends PeertuneError {
  override name = 'CommandObjectiveError';
  constructor(
    message: string,
    /** What kind of failure, for telling repeated identical failures apart from varied ones. */
    readonly kind: 'spawn' | 'exit' | 'protocol' | 'timeout' | 'reported' = 'exit',
    /** The child's last exception line from stderr (e.g. `ModuleNotFoundError: No module named 'torch'`). */
    readonly lastError: string | null = null,
  ) {
    super(message);
  }
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
  /** Seconds to wait for a version-1 child to exit after its final message before killing it (default 10). */
  exitGrace?: number;
  /**
   * Device groups, one per job slot: slot i runs with CUDA_VISIBLE_DEVICES=devices[i].join(','), and
   * its trials get the system attr `devices`. At most devices.length trials run at once.
   */
  devices?: readonly (readonly string[])[];
}

/** A command objective: the objective function plus the processes it keeps. */
export interface CommandObjective extends Objective {
  /** Tells idle persistent children to stop and waits for every child to exit. */
  close(): Promise<void>;
  /** How many processes were started so far (one per slot for persistent children). */
  readonly processesStarted: number;
}

/** Bytes a stdout protocol line or a stderr line may have (a longer stderr line is cut, not kept whole). */
const MAX_LINE = 1 << 20;
const MAX_STDERR_LINE = 8 * 1024;
const KILL_GRACE_MS = 2000;

type Outcome = { kind: 'values'; values: number[] } | { kind: 'pruned' } | { kind: 'fail'; reason: string; failKind: CommandObjectiveError['kind'] };

/** Supervisors still running, so a worker that is told to stop can take them down with it. */
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

/**
 * The supervisor, run as `node -e SUPERVISOR -- program args...` in its own process group. fd 3 is its
 * lifeline to the worker: it reports the command's spawn error or exit there, and when fd 3 closes
 * (the worker is gone) it kills the group, itself included.
 */
const SUPERVISOR = `
const { spawn } = require('node:child_process');
const net = require('node:net');
const [program, ...args] = process.argv.slice(1);
const life = new net.Socket({ fd: 3, readable: true, writable: true });
const tell = (m) => { try { life.write(JSON.stringify(m) + '\\n'); } catch {} };
const die = () => { try { process.kill(-process.pid, 'SIGKILL'); } catch {} process.exit(137); };
life.on('end', die); life.on('close', die); life.on('error', die);
life.resume();
const child = spawn(program, args, { stdio: [0, 1, 2] });
child.on('spawn', () => tell({ started: child.pid }));
child.on('error', (e) => { tell({ spawnError: e.message, code: e.code || null }); life.end(() => process.exit(127)); });
child.on('exit', (code, signal) => { tell({ exit: code, signal }); life.end(() => process.exit(code === null ? 128 : code)); });
for (const s of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(s, () => { try { child.kill(s); } catch {} });
`;

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

/** JSON cannot carry NaN or Infinity; the Python client sends them as these strings. */
function wireNumber(v: unknown): unknown {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return v;
}

function isNumberList(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

function clip(s: string, n = 200): string {
  return s.length > n ? s.slice(0, n) + '…' : s;
}

/**
 * The last line of stderr that looks like an exception or error message: Python's
 * `ModuleNotFoundError: No module named 'torch'`, Node's `Error: ...`, a shell's `command not found`.
 */
export function lastErrorLine(lines: readonly string[]): string | null {
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!.trim();
    if (/^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)|Error|panic|fatal|FATAL)\b.*/.test(l) || /: (command )?not found$|No such file or directory/.test(l)) return clip(l, 300);
  }
  // No exception line: the last thing the child said is the best clue there is.
  for (let i = lines.length - 1; i >= 0; i--) if (lines[i]!.trim()) return clip(lines[i]!.trim(), 300);
  return null;
}

/**
 * Splits a byte stream into lines with a bound on each: a line longer than `max` is cut there (with
 * a mark) and the rest of it up to the next newline is dropped, so a child that writes 200 MB without
 * a newline costs `max` bytes of memory, not 200 MB.
 */
function boundedLines(stream: Readable, max: number, onLine: (line: string, cut: boolean) => void, onEnd: () => void): void {
  let buf = '';
  let dropping = false;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf('\n', start);
      if (nl < 0) break;
      const piece = chunk.slice(start, nl);
      if (dropping) dropping = false;
      else {
        const line = (buf + piece).replace(/\r$/, '');
        buf = '';
        if (line.length > max) onLine(line.slice(0, max), true);
        else onLine(line, false);
      }
      start = nl + 1;
    }
    if (dropping) return;
    buf += chunk.slice(start);
    if (buf.length > max) {
      onLine(buf.slice(0, max), true);
      buf = '';
      dropping = true;
    }
  });
  stream.on('end', () => {
    if (buf && !dropping) onLine(buf, false);
    buf = '';
    onEnd();
  });
  stream.on('error', () => {});
}

interface Assignment {
  trial: Trial;
  outcome: Outcome | null;
  /** A v2 child has been sent this trial (in answer to its `next`). */
  sent: boolean;
  resolve: (o: Outcome) => void;
  timer: NodeJS.Timeout | null;
}

/** One running child (through its supervisor), kept by a job slot for trial after trial. */
class ChildRun {
  readonly child: ChildProcess;
  /** null until the first line: then 2 (hello) or 1 (anything else). */
  protocol: 1 | 2 | null = null;
  current: Assignment | null = null;
  /** A v2 child's `next` request waiting for this slot's next trial. */
  private waitingNext = false;
  exited = false;
  readonly exitInfo: Promise<{ code: number | null; signal: string | null; spawnError: string | null }>;
  readonly tail: string[] = [];
  private lineNo = 0;
  private graceTimer: NodeJS.Timeout | null = null;
  private killTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly opts: CommandObjectiveOptions,
    first: Trial,
    private readonly slot: Slot,
  ) {
    const [program, ...args] = opts.command;
    const env: Record<string, string | undefined> = {
      ...process.env,
      ...opts.env,
      PEERTUNE_PROTOCOL: String(PROTOCOL_VERSION),
      PEERTUNE_STUDY_NAME: first.study.studyName,
      PEERTUNE_TRIAL_NUMBER: String(first.number),
      PEERTUNE_TRIAL_ID: first.trialId,
      PEERTUNE_JOB_SLOT: String(slot.index),
    };
    if (slot.devices) env['CUDA_VISIBLE_DEVICES'] = slot.devices.join(',');
    this.child = spawn(process.execPath, ['-e', SUPERVISOR, '--', program!, ...args], {
      cwd: opts.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe', 'pipe'],
      // Own process group: a timeout or shutdown kills the whole tree (a shell and what it started).
      detached: true,
    });
    liveChildren.add(this.child);
    // The child may exit without reading its stdin; a broken pipe there is not our failure.
    this.child.stdin?.on('error', () => {});

    let report: { code: number | null; signal: string | null; spawnError: string | null } = { code: null, signal: null, spawnError: null };
    let lifeEnded!: () => void;
    const lifeDone = new Promise<void>((r) => (lifeEnded = r));
    const life = this.child.stdio[3] as Readable & Writable;
    life.on('error', () => {});
    boundedLines(life, 64 * 1024, (line) => {
      try {
        const m = JSON.parse(line) as { started?: number; exit?: number | null; signal?: string | null; spawnError?: string };
        if (m.started !== undefined) this.onCommandStarted();
        else if (m.spawnError !== undefined) report = { code: null, signal: null, spawnError: m.spawnError };
        else report = { code: m.exit ?? null, signal: m.signal ?? null, spawnError: null };
      } catch {
        // not from our supervisor; ignore
      }
    }, () => lifeEnded());

    boundedLines(this.child.stdout!, MAX_LINE, (line, cut) => {
      if (cut) this.violation(`the command wrote more than ${MAX_LINE} bytes on stdout without a newline`);
      else this.handle(line);
    }, () => {});
    const onStderr = opts.onStderr ?? ((line: string, n: number) => logger.debug(`[trial ${n}] ${line}`));
    const tailMax = opts.stderrTailLines ?? 20;
    boundedLines(this.child.stderr!, MAX_STDERR_LINE, (line, cut) => {
      const shown = cut ? `${line}… (line cut at ${MAX_STDERR_LINE} bytes)` : line;
      this.tail.push(clip(shown, 500));
      if (this.tail.length > tailMax) this.tail.shift();
      onStderr(shown, this.current?.trial.number ?? -1);
    }, () => {});

    this.exitInfo = new Promise((resolve) => {
      this.child.once('error', (err) => resolve({ code: null, signal: null, spawnError: err.message }));
      this.child.once('exit', (code, signal) => {
        // Whatever the command started in its group goes with it, so the pipes close and nothing leaks.
        killGroup(this.child, 'SIGKILL');
        // The supervisor's own report is exact (the command's code or signal); it comes on the lifeline.
        const settle = () => resolve(report.spawnError || report.code !== null || report.signal ? report : { code, signal, spawnError: null });
        void Promise.race([lifeDone, new Promise((r) => setTimeout(r, 500).unref())]).then(settle);
      });
    });
    void this.exitInfo.then((e) => this.onExit(e));
  }

  /**
   * Whether this child keeps the worker's event loop alive. An idle persistent child does not: a
   * program that forgets close() still exits, and its children then see their pipes close and stop.
   */
  private hold(on: boolean): void {
    const handles = [this.child, this.child.stdin, this.child.stdout, this.child.stderr, this.child.stdio[3]] as unknown as ({ ref?: () => void; unref?: () => void } | null)[];
    for (const h of handles) (on ? h?.ref : h?.unref)?.call(h);
  }

  /** The command itself is running (the supervisor's start-up does not count against a trial's timeout). */
  private commandStarted = false;

  private onCommandStarted(): void {
    this.commandStarted = true;
    if (this.current && !this.current.outcome) this.armTimeout(this.current);
  }

  private armTimeout(a: Assignment): void {
    if (this.opts.trialTimeout === undefined || a.timer) return;
    a.timer = setTimeout(
      () => this.decide({ kind: 'fail', reason: `the command ran past the per-trial timeout of ${this.opts.trialTimeout} s and was killed`, failKind: 'timeout' }, true),
      this.opts.trialTimeout * 1000,
    );
  }

  /** Gives the child its next trial; resolves with the trial's outcome. */
  run(trial: Trial): Promise<Outcome> {
    this.hold(true);
    // A trial's stderr tail is its own; the first trial's also holds the process's start-up output.
    if (this.protocol === 2) this.tail.length = 0;
    return new Promise<Outcome>((resolve) => {
      const a: Assignment = { trial, outcome: null, sent: this.protocol === 1, resolve, timer: null };
      this.current = a;
      if (this.commandStarted) this.armTimeout(a);
      if (this.waitingNext) this.sendTrial();
    });
  }

  private sendTrial(): void {
    const a = this.current;
    if (!a || !this.waitingNext) return;
    this.waitingNext = false;
    a.sent = true;
    this.reply({ ok: true, trial: { number: a.trial.number, trial_id: a.trial.trialId, study_name: a.trial.study.studyName } });
  }

  /** Tells an idle v2 child there is no more work. */
  stopIdle(): void {
    this.hold(true);
    if (this.waitingNext) {
      this.waitingNext = false;
      this.reply({ ok: true, stop: true });
    }
    this.child.stdin?.end();
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    killGroup(this.child, signal);
    this.killTimer ??= setTimeout(() => killGroup(this.child, 'SIGKILL'), KILL_GRACE_MS);
    this.killTimer.unref();
  }

  private reply(msg: Record<string, unknown>): void {
    const stdin = this.child.stdin;
    if (stdin && !stdin.destroyed && stdin.writable) stdin.write(JSON.stringify(msg) + '\n');
  }

  private violation(reason: string): void {
    if (this.current && !this.current.outcome) this.decide({ kind: 'fail', reason, failKind: 'protocol' }, true);
    else this.kill();
  }

  /** Settles the current trial. `kill`: the child is beyond use (it is killed and the slot restarts). */
  private decide(o: Outcome, kill = false): void {
    const a = this.current;
    if (!a || a.outcome) return;
    a.outcome = o;
    if (kill) {
      this.kill();
      return; // settled at exit, so the next process does not overlap this one
    }
    if (this.protocol === 2) {
      this.finish(a);
      return;
    }
    // A version-1 child exits right after its final message; do not let one linger forever.
    this.graceTimer = setTimeout(() => this.kill(), (this.opts.exitGrace ?? 10) * 1000);
  }

  private finish(a: Assignment): void {
    if (a.timer) clearTimeout(a.timer);
    if (this.current === a) this.current = null;
    if (!this.exited) this.hold(false);
    a.resolve(a.outcome!);
  }

  private onExit(e: { code: number | null; signal: string | null; spawnError: string | null }): void {
    this.exited = true;
    liveChildren.delete(this.child);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    if (this.killTimer) clearTimeout(this.killTimer);
    if (this.slot.run === this) this.slot.run = null;
    const a = this.current;
    if (!a) return;
    const { storage, studyId } = a.trial.study;
    if (e.code !== null) storage.setTrialSystemAttr(studyId, a.trial.trialId, 'exitCode', e.code);
    if (!a.outcome) {
      const program = this.opts.command[0]!;
      const last = lastErrorLine(this.tail);
      if (e.spawnError) {
        a.outcome = { kind: 'fail', reason: `could not start ${JSON.stringify(program)}: ${e.spawnError}`, failKind: 'spawn' };
      } else if (e.code === 0) {
        a.outcome = { kind: 'fail', reason: 'the command exited with code 0 without sending a result', failKind: 'exit' };
      } else {
        const how = e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
        a.outcome = { kind: 'fail', reason: `the command ${how}${last ? ` (last error: ${last})` : ''}`, failKind: 'exit' };
      }
    }
    this.finish(a);
  }

  private handle(line: string): void {
    this.lineNo++;
    if (line.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.violation(`the command printed a line that is not protocol JSON (line ${this.lineNo} of stdout: ${JSON.stringify(clip(line))}); log to stderr instead`);
      return;
    }
    if (typeof msg === 'number') msg = { op: 'result', value: msg };
    else if (isNumberList(msg)) msg = { op: 'result', values: msg };
    if (!msg || typeof msg !== 'object' || Array.isArray(msg) || typeof (msg as { op?: unknown }).op !== 'string') {
      this.violation(`protocol line ${this.lineNo} is not a request object with an "op": ${JSON.stringify(clip(line))}`);
      return;
    }
    const m = msg as Record<string, unknown>;
    if (this.protocol === null) {
      this.protocol = m['op'] === 'hello' ? 2 : 1;
      // A version-1 child runs the trial it was started for, without asking for it.
      if (this.protocol === 1 && this.current) this.current.sent = true;
    }
    if (m['op'] === 'hello') {
      if (this.lineNo !== 1) return this.violation('"hello" must be the first protocol line');
      this.reply({ ok: true, protocol: 2 });
      return;
    }
    if (m['op'] === 'next') {
      if (this.protocol !== 2) return this.violation('"next" needs a version-2 child (send {"op":"hello","protocol":2} first)');
      if (this.current && this.current.sent && !this.current.outcome) return this.violation('"next" before the trial in progress sent its result');
      this.waitingNext = true;
      this.sendTrial();
      return;
    }
    const a = this.current;
    if (!a || a.outcome || !a.sent) {
      // A v1 child talking after its final message, or a v2 child outside a trial.
      if (this.protocol === 2) this.violation(`protocol line ${this.lineNo}: "${String(m['op'])}" outside a trial (ask with "next" first)`);
      return;
    }
    const trial = a.trial;
    try {
      switch (m['op']) {
        case 'suggest': {
          const name = m['name'];
          if (typeof name !== 'string' || name === '') throw new DistributionError('suggest needs a non-empty "name"');
          this.reply({ ok: true, value: trial.suggest(name, distributionFromWire(name, m['distribution'])) });
          return;
        }
        case 'report':
          trial.report(wireNumber(m['value']) as number, m['step'] as number);
          this.reply({ ok: true, prune: trial.shouldPrune() });
          return;
        case 'should_prune':
          this.reply({ ok: true, prune: trial.shouldPrune() });
          return;
        case 'set_user_attr':
          if (typeof m['key'] !== 'string' || m['key'] === '') throw new Error('set_user_attr needs a non-empty "key"');
          trial.setUserAttr(m['key'], m['value'] ?? null);
          this.reply({ ok: true });
          return;
        case 'save_checkpoint':
        case 'get_checkpoint': {
          const req = m['op'] === 'save_checkpoint' ? saveCheckpointRequest(trial, m, this.opts.cwd) : getCheckpointRequest(trial);
          // The child waits for this answer before its next request, so answering later keeps the order.
          void req.then(
            (r) => this.current === a && this.reply({ ok: true, ...r }),
            (e: Error) => this.current === a && this.reply({ ok: false, error: e.message }),
          );
          return;
        }
        case 'result': {
          const raw = m['values'] !== undefined ? m['values'] : [m['value']];
          if (!Array.isArray(raw)) throw new Error('"values" must be an array of numbers');
          const values = raw.map(wireNumber);
          this.reply({ ok: true });
          // Validation of the numbers (count, NaN) is the study's: it fails the trial with the reason.
          this.decide({ kind: 'values', values: values as number[] });
          return;
        }
        case 'pruned':
          this.reply({ ok: true });
          this.decide({ kind: 'pruned' });
          return;
        case 'fail':
          this.reply({ ok: true });
          this.decide({ kind: 'fail', reason: `the command reported failure: ${clip(String(m['reason'] ?? 'no reason given'), 500)}`, failKind: 'reported' });
          return;
        default:
          this.violation(`protocol line ${this.lineNo} has unknown op ${JSON.stringify(m['op'])}; valid: hello, next, suggest, report, should_prune, set_user_attr, save_checkpoint, get_checkpoint, result, pruned, fail`);
      }
    } catch (err) {
      this.reply({ ok: false, error: err instanceof Error ? err.message : String(err) });
    }
  }
}

/** A job slot: its devices and the child it keeps between trials. */
interface Slot {
  index: number;
  devices: readonly string[] | null;
  run: ChildRun | null;
  busy: boolean;
}

/**
 * An objective that runs `command` and speaks the line protocol with it: one process per job slot
 * for version-2 children, one per trial for version-1 ones. Use it with
 * `study.optimize(objective, { catch: [CommandObjectiveError] })` so a failing child fails its trial
 * and the loop goes on, and call `objective.close()` after optimize.
 */
export function commandObjective(opts: CommandObjectiveOptions): CommandObjective {
  if (!Array.isArray(opts.command) || opts.command.length === 0 || typeof opts.command[0] !== 'string' || opts.command[0] === '') {
    throw new CommandObjectiveError('command objective: give the program to run, e.g. ["python3", "train.py"]', 'spawn');
  }
  if (opts.trialTimeout !== undefined && !(typeof opts.trialTimeout === 'number' && opts.trialTimeout > 0)) {
    throw new CommandObjectiveError(`command objective: trialTimeout must be a positive number of seconds, got ${opts.trialTimeout}`, 'spawn');
  }
  if (opts.devices !== undefined && (!Array.isArray(opts.devices) || opts.devices.length === 0)) {
    throw new CommandObjectiveError('command objective: devices must be a non-empty list of device groups, e.g. [["0"], ["1"]]', 'spawn');
  }
  const slots: Slot[] = [];
  const waiters: ((s: Slot) => void)[] = [];
  let started = 0;

  const acquire = (): Promise<Slot> => {
    const free = slots.find((s) => !s.busy);
    const limit = opts.devices?.length ?? Infinity;
    if (free) {
      free.busy = true;
      return Promise.resolve(free);
    }
    if (slots.length < limit) {
      const s: Slot = { index: slots.length, devices: opts.devices?.[slots.length] ?? null, run: null, busy: true };
      slots.push(s);
      return Promise.resolve(s);
    }
    return new Promise((resolve) => waiters.push(resolve));
  };
  const release = (s: Slot): void => {
    const next = waiters.shift();
    if (next) next(s);
    else s.busy = false;
  };

  const objective = async (trial: Trial): Promise<number[]> => {
    const slot = await acquire();
    try {
      if (slot.devices) trial.study.storage.setTrialSystemAttr(trial.study.studyId, trial.trialId, 'devices', slot.devices.join(','));
      if (!slot.run || slot.run.exited) {
        slot.run = new ChildRun(opts, trial, slot);
        started++;
      }
      const run = slot.run;
      const outcome = await run.run(trial);
      // A version-1 child runs one trial; the next trial starts a new one.
      if (run.protocol !== 2 && !run.exited) await run.exitInfo;
      const { storage, studyId } = trial.study;
      if (outcome.kind === 'pruned') throw new TrialPruned(`trial ${trial.number} was pruned by its command`);
      if (outcome.kind === 'fail') {
        storage.setTrialSystemAttr(studyId, trial.trialId, 'stderrTail', run.tail.join('\n'));
        throw new CommandObjectiveError(outcome.reason, outcome.failKind, lastErrorLine(run.tail));
      }
      return outcome.values;
    } finally {
      release(slot);
    }
  };

  const close = async (): Promise<void> => {
    const runs = slots.map((s) => s.run).filter((r): r is ChildRun => r !== null && !r.exited);
    for (const r of runs) r.stopIdle();
    await Promise.all(
      runs.map(async (r) => {
        const t = setTimeout(() => r.kill(), (opts.exitGrace ?? 10) * 1000);
        await r.exitInfo;
        clearTimeout(t);
      }),
    );
  };

  Object.defineProperty(objective, 'processesStarted', { get: () => started });
  return Object.assign(objective, { close }) as unknown as CommandObjective;
}
