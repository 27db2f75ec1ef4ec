import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DistributionError,
  categoricalDistribution,
  contains,
  createStudy,
  floatDistribution,
  intDistribution,
  RandomSampler,
  setLogSink,
  setVerbosity,
} from '../src/index.js';

setVerbosity('warning');

test('float: low > high, log with low <= 0, log with step are rejected with the parameter named', () => {
  assert.throws(() => floatDistribution('lr', 1, 0), (e: Error) => e instanceof DistributionError && /"lr".*low \(1\) must be <= high \(0\)/.test(e.message));
  assert.throws(() => floatDistribution('lr', 0, 1, { log: true }), /"lr": log=true needs low > 0, got low=0/);
  assert.throws(() => floatDistribution('lr', -1, 1, { log: true }), /log=true needs low > 0/);
  assert.throws(() => floatDistribution('lr', 0.1, 1, { log: true, step: 0.1 }), /log and step cannot be used together/);
  assert.throws(() => floatDistribution('lr', NaN, 1), /low must be a finite number/);
  assert.throws(() => floatDistribution('lr', 0, Infinity), /high must be a finite number/);
  assert.throws(() => floatDistribution('lr', 0, 1, { step: 0 }), /step must be > 0/);
});

test('float step that does not divide the range lowers high, with a warning (Optuna rule)', () => {
  const warnings: string[] = [];
  const d = floatDistribution('x', 0, 1, { step: 0.3 }, (m) => warnings.push(m));
  assert.equal(d.high, 0.9);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /"x".*\[0, 1\].*step=0.3.*\[0, 0.9\]/);
  const exact: string[] = [];
  assert.equal(floatDistribution('x', 0, 1, { step: 0.25 }, (m) => exact.push(m)).high, 1);
  assert.equal(exact.length, 0);
});

test('int: non-integer bounds, bad step, log with low < 1, uneven step', () => {
  assert.throws(() => intDistribution('n', 1.5, 3), /"n": low and high of an int parameter must be integers/);
  assert.throws(() => intDistribution('n', 5, 3), /low \(5\) must be <= high \(3\)/);
  assert.throws(() => intDistribution('n', 0, 10, { log: true }), /log=true needs low >= 1/);
  assert.throws(() => intDistribution('n', 1, 10, { log: true, step: 2 }), /log and step cannot be used together/);
  assert.throws(() => intDistribution('n', 1, 10, { step: 0 }), /step must be a positive integer/);
  const warnings: string[] = [];
  assert.equal(intDistribution('n', 0, 10, { step: 3 }, (m) => warnings.push(m)).high, 9);
  assert.equal(warnings.length, 1);
});

test('categorical: empty, unsupported and duplicated choices are rejected; mixed kinds allowed', () => {
  assert.throws(() => categoricalDistribution('act', []), /"act": choices must be a non-empty array/);
  assert.throws(() => categoricalDistribution('act', [{}] as never), /choice \{\} is not allowed/);
  assert.throws(() => categoricalDistribution('act', ['a', 'a']), /listed twice/);
  const d = categoricalDistribution('act', ['relu', 1, true, null]);
  assert.ok(contains(d, null) && contains(d, true) && contains(d, 1) && !contains(d, '1'));
});

test('suggest: same name twice returns the same value; another distribution is an error naming both', async () => {
  const study = await createStudy({ sampler: new RandomSampler({ seed: 3 }) });
  const trial = study.ask();
  const a = trial.suggestFloat('x', 0, 1);
  assert.equal(trial.suggestFloat('x', 0, 1), a);
  assert.throws(
    () => trial.suggestFloat('x', 0, 2),
    (e: Error) => /parameter "x" was already suggested.*FloatDistribution\(low=0, high=1.*FloatDistribution\(low=0, high=2/.test(e.message),
  );
  assert.throws(() => trial.suggestInt('x', 0, 1), /IntDistribution/);
  const n = trial.suggestInt('n', 1, 1000, { log: true });
  assert.ok(Number.isInteger(n) && n >= 1 && n <= 1000);
  const s = trial.suggestFloat('s', 0, 1, { step: 0.1 });
  assert.ok(Math.abs(s * 10 - Math.round(s * 10)) < 1e-9);
  assert.equal(trial.suggestCategorical('one', ['only']), 'only');
});

test('warnings for uneven steps reach the log sink', async () => {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    const study = await createStudy();
    study.ask().suggestFloat('x', 0, 1, { step: 0.3 });
  } finally {
    setLogSink(prev);
  }
  assert.ok(lines.some((l) => /^\[W .*\] The distribution of "x"/.test(l)), lines.join('\n'));
});
