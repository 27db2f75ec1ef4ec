/**
 * Prune decisions against Optuna 3.1 (Debian's python3-optuna, run through /usr/bin/python3) on generated
 * histories: several hundred seeded scenarios, each one pruner with options drawn away from the defaults
 * (now and then a Median or Percentile pruner with every option left out),
 * and trials whose reports include NaN (now and then a trial that reports only NaN) and ±Infinity, values
 * on a coarse grid so they sit exactly on the interpolated percentile, sparse steps and reports repeated
 * at a step already reported, and trials that end COMPLETE, FAIL or stay RUNNING. Both sides run the same
 * loop (ask, report, shouldPrune after every report, tell) and every decision must agree.
 *
 * Hyperband's bracket hash differs by design (trial id here, trial number in Optuna), so Optuna is handed
 * peertune's bracket of each trial; everything inside a bracket must then agree. SHA and Hyperband get an
 * integer minResource / maxResource: with 'auto', peertune also counts trials that reported before the
 * estimate existed, which Optuna never records in a rung (see successive-halving.ts).
 *
 * Runs only where /usr/bin/python3 imports optuna (.ci/run installs python3-optuna).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import {
  HyperbandPruner,
  MedianPruner,
  PatientPruner,
  PercentilePruner,
  Rng,
  SuccessiveHalvingPruner,
  ThresholdPruner,
  createStudy,
  setVerbosity,
  type Pruner,
  type StudyDirection,
} from '../../src/index.js';
import { nanPercentile } from '../../src/pruners/percentile.js';

setVerbosity('error');

const PYTHON = '/usr/bin/python3';
const haveOptuna = spawnSync(PYTHON, ['-c', 'import optuna'], { encoding: 'utf8' }).status === 0;
const skip = haveOptuna ? false : `python3-optuna is not installed (${PYTHON} -c "import optuna" failed)`;

/** JSON has no NaN or Infinity: such values travel as strings that Python's float() reads back. */
type Wire = number | 'nan' | 'inf' | '-inf';
const toWire = (v: number): Wire => (Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : v);

interface TrialPlan {
  reports: [step: number, value: number][];
  /** What happens when the pruner lets the trial run to its end. */
  end: { state: 'COMPLETE'; value: number } | { state: 'FAIL' } | { state: 'RUNNING' };
}

interface Scenario {
  kind: string;
  py: string;
  ts: () => Pruner;
  direction: StudyDirection;
  trials: TrialPlan[];
}

const pick = <T>(rng: Rng, xs: readonly T[]): T => xs[rng.int(0, xs.length - 1)]!;

function stepOptions(rng: Rng): { py: string; ts: Record<string, number> } {
  const o = { nStartupTrials: rng.int(0, 4), nWarmupSteps: rng.int(0, 3), intervalSteps: rng.int(1, 3), nMinTrials: rng.int(1, 3) };
  return {
    ts: o,
    py: `n_startup_trials=${o.nStartupTrials}, n_warmup_steps=${o.nWarmupSteps}, interval_steps=${o.intervalSteps}, n_min_trials=${o.nMinTrials}`,
  };
}

const pyFloat = (v: number): string => (v === Infinity ? "float('inf')" : v === -Infinity ? "float('-inf')" : String(v));

/** One pruner of the given kind with options drawn away from the defaults. */
function drawPruner(kind: string, rng: Rng): Pick<Scenario, 'py' | 'ts'> {
  switch (kind) {
    case 'median': {
      // One in eight with every option left out (Optuna's defaults on both sides).
      if (rng.random() < 0.125) return { py: 'MedianPruner()', ts: () => new MedianPruner() };
      const o = stepOptions(rng);
      return { py: `MedianPruner(${o.py})`, ts: () => new MedianPruner(o.ts) };
    }
    case 'percentile': {
      const p = rng.random() < 0.6 ? pick(rng, [0, 10, 25, 33.3, 50, 66.7, 75, 90, 100]) : Math.round(rng.uniform(0, 100) * 100) / 100;
      if (rng.random() < 0.125) return { py: `PercentilePruner(${p})`, ts: () => new PercentilePruner(p) };
      const o = stepOptions(rng);
      return { py: `PercentilePruner(${p}, ${o.py})`, ts: () => new PercentilePruner(p, o.ts) };
    }
    case 'sha': {
      const o = { minResource: rng.int(1, 3), reductionFactor: rng.int(2, 4), minEarlyStoppingRate: rng.int(0, 2), bootstrapCount: rng.int(0, 2) };
      return {
        py: `SuccessiveHalvingPruner(min_resource=${o.minResource}, reduction_factor=${o.reductionFactor}, min_early_stopping_rate=${o.minEarlyStoppingRate}, bootstrap_count=${o.bootstrapCount})`,
        ts: () => new SuccessiveHalvingPruner(o),
      };
    }
    case 'hyperband': {
      const minResource = rng.int(1, 3);
      const o = { minResource, maxResource: rng.int(minResource + 1, 40), reductionFactor: rng.int(2, 4), bootstrapCount: rng.int(0, 2) };
      return {
        py: `HyperbandPruner(min_resource=${o.minResource}, max_resource=${o.maxResource}, reduction_factor=${o.reductionFactor}, bootstrap_count=${o.bootstrapCount})`,
        ts: () => new HyperbandPruner(o),
      };
    }
    case 'threshold': {
      const both = rng.random();
      const lower = both < 0.7 ? Math.round(rng.uniform(-0.2, 0.5) * 10) / 10 : undefined;
      const upper = both > 0.3 || lower === undefined ? Math.round(rng.uniform(0.6, 1.4) * 10) / 10 : undefined;
      const o = { lower, upper, nWarmupSteps: rng.int(0, 3), intervalSteps: rng.int(1, 3) };
      const py = [lower !== undefined ? `lower=${pyFloat(lower)}` : '', upper !== undefined ? `upper=${pyFloat(upper)}` : '', `n_warmup_steps=${o.nWarmupSteps}`, `interval_steps=${o.intervalSteps}`];
      return { py: `ThresholdPruner(${py.filter(Boolean).join(', ')})`, ts: () => new ThresholdPruner(o) };
    }
    case 'patient': {
      const patience = rng.int(0, 3);
      const minDelta = pick(rng, [0, 0.01, 0.1, 0.25]);
      const wrapped = rng.int(0, 2);
      const o = stepOptions(rng);
      const p = pick(rng, [25, 50, 75]);
      const pyWrapped = ['None', `MedianPruner(${o.py})`, `PercentilePruner(${p}, ${o.py})`][wrapped]!;
      const tsWrapped = (): Pruner | null => [null, new MedianPruner(o.ts), new PercentilePruner(p, o.ts)][wrapped]!;
      return { py: `PatientPruner(${pyWrapped}, patience=${patience}, min_delta=${minDelta})`, ts: () => new PatientPruner(tsWrapped(), { patience, minDelta }) };
    }
    default:
      throw new Error(`unknown pruner kind ${kind}`);
  }
}

const KINDS = ['median', 'percentile', 'sha', 'hyperband', 'threshold', 'patient'] as const;
const PER_KIND = 80;

/** Learning curves on a 0.1 grid (ties), with NaN, ±Infinity, sparse and repeated steps. */
function drawTrials(rng: Rng): TrialPlan[] {
  const trials: TrialPlan[] = [];
  const allNaN = rng.random() < 0.3 ? rng.int(0, 20) : -1;
  for (let i = rng.int(6, 28); i > 0; i--) {
    const base = rng.uniform(0, 1);
    const slope = rng.uniform(-0.08, 0.04);
    const stride = pick(rng, [1, 1, 1, 2, 3]);
    const nanRate = pick(rng, [0, 0, 0.05, 0.15, 0.4]);
    const length = rng.random() < 0.04 ? 0 : rng.int(1, 24);
    const reports: [number, number][] = [];
    let step = rng.random() < 0.2 ? rng.int(0, 3) : 0;
    for (let k = 0; k < length; k++) {
      let v = Math.round((base + slope * step + 0.08 * rng.normal()) * 10) / 10 + 0; // + 0 turns -0 into 0
      const r = rng.random();
      if (trials.length === allNaN || r < nanRate) v = NaN;
      else if (r < nanRate + 0.01) v = rng.random() < 0.5 ? Infinity : -Infinity;
      reports.push([step, v]);
      // A repeated report at the same step (ignored by both, the pruner is still asked).
      if (rng.random() < 0.08) reports.push([step, Math.round(rng.uniform(0, 1) * 10) / 10]);
      // Sparse steps: now and then skip ahead more than the stride.
      step += stride + (rng.random() < 0.15 ? rng.int(1, 5) : 0);
    }
    const fate = rng.random();
    const lastFinite = [...reports].reverse().find(([, v]) => Number.isFinite(v))?.[1];
    const end: TrialPlan['end'] =
      fate < 0.8 ? { state: 'COMPLETE', value: lastFinite ?? Math.round(rng.uniform(0, 1) * 10) / 10 } : fate < 0.9 ? { state: 'FAIL' } : { state: 'RUNNING' };
    trials.push({ reports, end });
  }
  return trials;
}

function scenarios(): Scenario[] {
  const out: Scenario[] = [];
  for (let i = 0; i < KINDS.length * PER_KIND; i++) {
    const rng = Rng.from('pruner-parity-generated', i);
    const kind = KINDS[i % KINDS.length]!;
    out.push({ kind, ...drawPruner(kind, rng), direction: rng.random() < 0.5 ? 'minimize' : 'maximize', trials: drawTrials(rng) });
  }
  return out;
}

const PARITY_SCRIPT = String.raw`
import json, sys, warnings, optuna
warnings.simplefilter("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)
from optuna.pruners import *
from optuna.trial import TrialState
inp = json.load(sys.stdin)
out = []
for sc in inp:
    pruner = eval(sc["py"])
    if sc["brackets"] is not None:
        b = sc["brackets"]
        pruner._get_bracket_id = lambda study, trial, b=b: b[trial.number]
    study = optuna.create_study(direction=sc["direction"], pruner=pruner)
    decisions = []
    for plan in sc["trials"]:
        trial = study.ask()
        pruned = None
        for i, (step, value) in enumerate(plan["reports"]):
            trial.report(float(value), step)
            if trial.should_prune():
                pruned = i
                break
        if pruned is not None:
            study.tell(trial, state=TrialState.PRUNED)
        elif plan["end"]["state"] == "COMPLETE":
            study.tell(trial, plan["end"]["value"])
        elif plan["end"]["state"] == "FAIL":
            study.tell(trial, state=TrialState.FAIL)
        decisions.append(pruned)
    out.append(decisions)
print(json.dumps(out))
`;

test('parity with Optuna 3.1 on generated histories (NaN, ties, sparse and repeated steps, non-default options)', { skip, timeout: 600_000 }, async (t) => {
  const all = scenarios();
  const ours: (number | null)[][] = [];
  const brackets: (number[] | null)[] = [];
  let nanReports = 0;
  let repeats = 0;
  for (const sc of all) {
    const pruner = sc.ts();
    const s = await createStudy({ pruner, direction: sc.direction });
    const decisions: (number | null)[] = [];
    for (const plan of sc.trials) {
      const trial = s.ask();
      let pruned: number | null = null;
      const seen = new Set<number>();
      for (const [i, [step, value]] of plan.reports.entries()) {
        if (Number.isNaN(value)) nanReports++;
        if (seen.has(step)) repeats++;
        seen.add(step);
        trial.report(value, step);
        if (trial.shouldPrune()) {
          pruned = i;
          break;
        }
      }
      if (pruned !== null) await s.tell(trial, null, { state: 'PRUNED' });
      else if (plan.end.state === 'COMPLETE') await s.tell(trial, plan.end.value);
      else if (plan.end.state === 'FAIL') await s.tell(trial, null, { state: 'FAIL' });
      decisions.push(pruned);
    }
    ours.push(decisions);
    brackets.push(pruner instanceof HyperbandPruner ? s.trials.map((x) => pruner.bracketOf(s, x)!) : null);
  }
  const input = all.map((sc, i) => ({
    py: sc.py,
    direction: sc.direction,
    brackets: brackets[i],
    trials: sc.trials.map((p) => ({ reports: p.reports.map(([step, v]) => [step, toWire(v)]), end: p.end })),
  }));
  const run = spawnSync(PYTHON, ['-c', PARITY_SCRIPT], { input: JSON.stringify(input), encoding: 'utf8', maxBuffer: 1 << 28 });
  assert.equal(run.status, 0, run.stderr);
  const expected = JSON.parse(run.stdout) as (number | null)[][];

  const mismatches: string[] = [];
  for (const [i, sc] of all.entries()) {
    for (const [j, d] of ours[i]!.entries()) {
      if (d !== expected[i]![j]) mismatches.push(`scenario ${i} (${sc.py}, ${sc.direction}), trial ${j}: peertune pruned at report ${d}, Optuna at ${expected[i]![j]}`);
    }
  }
  const nTrials = all.reduce((n, sc) => n + sc.trials.length, 0);
  t.diagnostic(`${all.length} scenarios, ${nTrials} trials, ${nanReports} NaN reports, ${repeats} repeated steps, ${mismatches.length} disagreements`);
  assert.deepEqual(mismatches.slice(0, 10), [], `${mismatches.length} of ${nTrials} decisions differ`);

  // The histories must exercise each pruner both ways for the comparison to mean something.
  for (const kind of KINDS) {
    const decisions = all.flatMap((sc, i) => (sc.kind === kind ? ours[i]! : []));
    const pruned = decisions.filter((d) => d !== null).length;
    assert.ok(pruned > 30 && pruned < decisions.length - 30, `${kind} pruned ${pruned} of ${decisions.length} trials`);
  }
  assert.ok(nanReports > 500 && repeats > 200, `NaN reports ${nanReports}, repeated steps ${repeats}`);
  const spread = new Set(brackets.flatMap((b) => b ?? []));
  assert.ok(spread.size >= 3, 'the hyperband scenarios spread over several brackets');
});

test("nanPercentile equals numpy's nanpercentile bit for bit (ties, NaN, ±Infinity, every q)", { skip }, () => {
  const rng = Rng.from('nanpercentile-parity');
  const cases: { xs: number[]; q: number }[] = [];
  for (let i = 0; i < 3000; i++) {
    const n = rng.int(0, 12);
    const xs: number[] = [];
    for (let k = 0; k < n; k++) {
      const r = rng.random();
      xs.push(r < 0.1 ? NaN : r < 0.14 ? (rng.random() < 0.5 ? Infinity : -Infinity) : r < 0.6 ? Math.round(rng.uniform(-1, 1) * 10) / 10 + 0 : rng.uniform(-1, 1));
    }
    const q = rng.random() < 0.5 ? pick(rng, [0, 10, 25, 33.3, 50, 66.7, 75, 90, 100]) : rng.uniform(0, 100);
    cases.push({ xs, q });
  }
  const script = String.raw`
import json, sys, warnings, numpy as np
warnings.simplefilter("ignore")
out = []
for c in json.load(sys.stdin):
    v = float(np.nanpercentile(np.array([float(x) for x in c["xs"]], dtype=float), c["q"])) if c["xs"] else float("nan")
    out.append(v.hex())
print(json.dumps(out))
`;
  const run = spawnSync(PYTHON, ['-c', script], { input: JSON.stringify(cases.map((c) => ({ xs: c.xs.map(toWire), q: c.q }))), encoding: 'utf8', maxBuffer: 1 << 26 });
  assert.equal(run.status, 0, run.stderr);
  const expected = JSON.parse(run.stdout) as string[];
  const bad: string[] = [];
  for (const [i, c] of cases.entries()) {
    const got = nanPercentile(c.xs, c.q);
    const want = pyHexToNumber(expected[i]!);
    if (!Object.is(got, want) && !(Number.isNaN(got) && Number.isNaN(want))) bad.push(`${JSON.stringify(c.xs.map(toWire))} q=${c.q}: ${got} vs numpy ${want}`);
  }
  assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${cases.length} differ`);
});

/** Python's float.hex() back to a number (exact, so the comparison is bit for bit). */
function pyHexToNumber(h: string): number {
  if (h === 'nan') return NaN;
  if (h === 'inf') return Infinity;
  if (h === '-inf') return -Infinity;
  const m = /^(-)?0x([01])\.([0-9a-f]+)p([+-]\d+)$/.exec(h);
  if (!m) throw new Error(`unexpected float.hex ${h}`);
  const mant = parseInt(m[2]! + m[3]!, 16) / 16 ** m[3]!.length;
  const v = mant * 2 ** Number(m[4]);
  return m[1] ? -v : v;
}
