// Misuse of the public API gets an error that names the parameter, the value and what is valid
// (issue 5, item 6). The same cases are listed for users in docs/errors.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  createStudy,
  loadStudy,
  InMemoryStorage,
  setVerbosity,
  setLogSink,
  StudyUsageError,
  DuplicatedStudyError,
  StudyNotFoundError,
  DistributionError,
  MaxTrialsCallback,
  OptionError,
  PeertuneError,
  StorageError,
  ExportFormatError,
  parseTrialsJson,
} from '../src/index.js';

async function quiet<T>(fn: () => Promise<T>): Promise<T> {
  const prev = setLogSink(() => {});
  try {
    return await fn();
  } finally {
    setLogSink(prev);
  }
}

test('study creation and loading', async () => {
  await assert.rejects(createStudy({ direction: 'minimise' as never }), (e: Error) => e instanceof StudyUsageError && /unknown direction "minimise"; use "minimize" or "maximize"/.test(e.message));
  await assert.rejects(createStudy({ direction: 'minimize', directions: ['maximize'] }), /either direction or directions, not both/);
  await assert.rejects(createStudy({ directions: [] }), /directions must be a non-empty array/);
  await assert.rejects(createStudy({ studyName: '' }), /studyName must be a non-empty string/);
  const storage = new InMemoryStorage();
  await quiet(() => createStudy({ studyName: 'a', storage }));
  await assert.rejects(createStudy({ studyName: 'a', storage }), (e: Error) => e instanceof DuplicatedStudyError && /"a" already exists; pass loadIfExists: true/.test(e.message));
  await assert.rejects(createStudy({ studyName: 'a', storage, loadIfExists: true, direction: 'maximize' }), /exists with directions \[minimize\], not \[maximize\]/);
  await assert.rejects(loadStudy({ studyName: 'b', storage }), (e: Error) => e instanceof StudyNotFoundError && /no study named "b".*studies here: a/.test(e.message));
  assert.throws(() => setVerbosity('loud' as never), /unknown log level "loud"; use one of debug, info, warning, error, silent/);
});

test('suggest: bad ranges, steps, choices and redefinitions name the parameter', async () => {
  const study = await quiet(() => createStudy());
  const trial = await study.ask();
  const cases: [() => unknown, RegExp][] = [
    [() => trial.suggestFloat('lr', 1, 0), /parameter "lr": low \(1\) must be <= high \(0\)/],
    [() => trial.suggestFloat('lr2', 0, 1, { log: true }), /parameter "lr2": log=true needs low > 0, got low=0/],
    [() => trial.suggestFloat('lr3', 0.1, 1, { log: true, step: 0.1 }), /parameter "lr3": log and step cannot be used together/],
    [() => trial.suggestFloat('x', NaN, 1), /parameter "x": .*must be a finite number, got NaN/],
    [() => trial.suggestInt('n', 1.5, 4), /parameter "n": low and high of an int parameter must be integers/],
    [() => trial.suggestInt('n2', 1, 4, { step: 0 }), /parameter "n2": step must be a positive integer, got 0/],
    [() => trial.suggestCategorical('c', []), /parameter "c": choices must be a non-empty array/],
    [() => trial.suggestCategorical('c2', ['a', 'a']), /parameter "c2": choice "a" is listed twice/],
    [() => trial.suggestFloat('', 0, 1), /parameter name must be a non-empty string/],
  ];
  for (const [fn, re] of cases) assert.throws(fn, re);
  trial.suggestFloat('y', 0, 1);
  assert.throws(() => trial.suggestInt('y', 0, 1), /parameter "y" was already suggested in this trial with .*; it cannot be redefined as /);
  // NaN is a value (a diverging loss), stored as Optuna stores it; a non-number is a mistake.
  trial.report(NaN, 0);
  assert.ok(Number.isNaN(trial.snapshot().intermediateValues.get(0)));
  assert.throws(() => trial.report('0.5' as never, 1), /report\(\): value must be a number, got 0.5/);
  assert.throws(() => trial.report(1, -1), /report\(\): step must be a non-negative integer, got -1/);
  assert.throws(() => trial.report(1, 1.5), /report\(\): step must be a non-negative integer, got 1.5/);
  await quiet(() => study.tell(trial, 1));
  await assert.rejects(study.tell(trial, 1), /trial 0 is already finished \(COMPLETE\); tell\(\) can be called once per trial/);
});

test('tell, optimize and enqueue misuse', async () => {
  const study = await quiet(() => createStudy());
  assert.throws(() => study.bestTrial, /no trials are completed yet/);
  const t = await study.ask();
  await assert.rejects(study.tell(t), /tell\(\) needs values or a state/);
  // NaN and Infinity results fail the trial (as Optuna) with the reason recorded, rather than throwing.
  const failed = await quiet(() => study.tell(t, NaN));
  assert.equal(failed.state, 'FAIL');
  assert.match(String(failed.systemAttrs['failReason']), /NaN, which is not a finite number/);
  await assert.rejects(study.tell(99, 1), /no trial number 99/);
  await assert.rejects(study.tell('x' as never, 1), /tell\(\) takes a Trial from ask\(\) or a trial number/);
  await assert.rejects(study.optimize('f' as never), /optimize\(\) needs an objective function/);
  await assert.rejects(study.optimize(() => 1, { nTrials: -1 }), /nTrials must be a non-negative integer, got -1/);
  await assert.rejects(study.optimize(() => 1, { nJobs: 0 }), /nJobs must be a positive integer, got 0/);
  await assert.rejects(study.optimize(() => 1, { timeout: 0 }), /timeout must be a positive number of seconds, got 0/);
  await assert.rejects(study.optimize(() => 1, { maxTrials: 1.5 }), /maxTrials must be a non-negative integer, got 1.5/);
  await assert.rejects(study.enqueueTrial({ x: Infinity }), /enqueueTrial\(\): parameter "x" has value Infinity; use a finite number, string, boolean or null/);
  await assert.rejects(study.enqueueTrial([] as never), /enqueueTrial\(\) needs an object of parameter values/);
  const mo = await quiet(() => createStudy({ directions: ['minimize', 'maximize'] }));
  const mt = await mo.ask();
  assert.throws(() => mt.report(1, 0), /report\(\) is not supported for multi-objective studies/);
  assert.throws(() => mo.bestTrial, /single-objective/);
  const wrong = await quiet(() => mo.tell(mt, [1]));
  assert.equal(wrong.state, 'FAIL', 'a wrong number of values fails the trial');
});

test('every error peertune throws on purpose is a PeertuneError; option mistakes are OptionErrors naming the option', async () => {
  const study = await quiet(() => createStudy());
  const caught = async (fn: () => unknown): Promise<unknown> => {
    try {
      await fn();
    } catch (e) {
      return e;
    }
    assert.fail('expected an error');
  };
  const opt = await caught(() => study.optimize(() => 1, { nJobs: 0 }));
  assert.ok(opt instanceof OptionError && opt instanceof PeertuneError && opt.userFacing);
  assert.equal(opt.option, 'nJobs');
  assert.equal(opt.value, 0);
  assert.match(opt.message, /^optimize: nJobs must be a positive integer, got 0$/);
  const cb = await caught(() => new MaxTrialsCallback(-1));
  assert.ok(cb instanceof OptionError);
  assert.match(cb.message, /MaxTrialsCallback: nTrials must be a non-negative integer, got -1/);
  assert.ok((await caught(() => setVerbosity('loud' as never))) instanceof OptionError);
  const trial = study.ask();
  for (const [fn, cls] of [
    [() => trial.suggestFloat('lr', 1, 0), DistributionError],
    [() => study.bestTrial, StudyUsageError],
    [() => study.storage.getTrial(study.studyId, 'nobody:1'), StorageError],
    [() => parseTrialsJson('{'), ExportFormatError],
    [() => createStudy({ studyName: study.studyName, storage: study.storage }), DuplicatedStudyError],
  ] as const) {
    const e = await caught(fn);
    assert.ok(e instanceof cls && e instanceof PeertuneError, `${(e as Error).name} derives from PeertuneError`);
  }
});
