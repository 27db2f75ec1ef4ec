import assert from 'node:assert/strict';
import { test } from 'node:test';
import { waitFor } from './fixtures/wait.js';
import {
  createStudy,
  loadStudy,
  InMemoryStorage,
  MaxTrialsCallback,
  RandomSampler,
  TrialPruned,
  parseCsv,
  parseTrialsJson,
  setLogSink,
  setVerbosity,
  toCsv,
  toJson,
  trialsToRows,
  type Trial,
} from '../src/index.js';

setVerbosity('warning');

function captureLogs<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  return fn().then(
    (result) => {
      setLogSink(prev);
      return { result, lines };
    },
    (e) => {
      setLogSink(prev);
      throw e;
    },
  );
}

test('define-by-run: conditional parameters appear only on their branch', async () => {
  const study = await createStudy({ sampler: new RandomSampler({ seed: 7 }) });
  await study.optimize(
    (t) => {
      const kind = t.suggestCategorical('kind', ['svm', 'forest']);
      if (kind === 'svm') return t.suggestFloat('c', 1e-3, 1e3, { log: true });
      return t.suggestInt('depth', 1, 16);
    },
    { nTrials: 40 },
  );
  const trials = study.trials;
  assert.equal(trials.length, 40);
  const kinds = new Set(trials.map((t) => t.params['kind']));
  assert.deepEqual([...kinds].sort(), ['forest', 'svm']);
  for (const t of trials) {
    assert.equal(t.state, 'COMPLETE');
    const keys = Object.keys(t.params).sort();
    assert.deepEqual(keys, t.params['kind'] === 'svm' ? ['c', 'kind'] : ['depth', 'kind']);
    assert.equal(t.distributions['kind']!.type, 'categorical');
  }
});

test('best trial, value and params follow the direction; numbers are 0..n-1', async () => {
  for (const direction of ['minimize', 'maximize'] as const) {
    const study = await createStudy({ direction, sampler: new RandomSampler({ seed: 1 }) });
    await study.optimize((t) => t.suggestFloat('x', -5, 5) ** 2, { nTrials: 30 });
    const values = study.trials.map((t) => t.values![0]!);
    const expected = direction === 'minimize' ? Math.min(...values) : Math.max(...values);
    assert.equal(study.bestValue, expected);
    assert.equal(study.bestTrial.value, expected);
    assert.equal(study.bestParams['x']! as number ** 2, expected);
    assert.deepEqual(study.trials.map((t) => t.number), [...Array(30).keys()]);
  }
});

test('objective failures: NaN, Infinity, non-number and wrong count fail the trial with a logged reason', async () => {
  const study = await createStudy({ sampler: new RandomSampler({ seed: 2 }) });
  const outputs: unknown[] = [NaN, Infinity, 'abc', [1, 2], 1.5];
  const { lines } = await captureLogs(() => study.optimize(() => outputs.shift() as number, { nTrials: 5 }));
  const states = study.trials.map((t) => t.state);
  assert.deepEqual(states, ['FAIL', 'FAIL', 'FAIL', 'FAIL', 'COMPLETE']);
  const reasons = study.trials.slice(0, 4).map((t) => String(t.systemAttrs['failReason']));
  assert.match(reasons[0]!, /NaN, which is not a finite number/);
  assert.match(reasons[1]!, /Infinity, which is not a finite number/);
  assert.match(reasons[2]!, /"abc", which is not a number/);
  assert.match(reasons[3]!, /returned 2 value\(s\) but the study has 1 direction/);
  assert.equal(lines.filter((l) => /^\[W .*Trial \d failed with parameters/.test(l)).length, 4);
  assert.equal(study.bestValue, 1.5);
});

test('an exception fails the trial and is rethrown unless caught', async () => {
  class Flaky extends Error {}
  const study = await createStudy();
  await assert.rejects(
    study.optimize(() => {
      throw new Flaky('boom');
    }, { nTrials: 3 }),
    /boom/,
  );
  assert.equal(study.trials.length, 1);
  assert.equal(study.trials[0]!.state, 'FAIL');
  assert.match(String(study.trials[0]!.systemAttrs['failReason']), /boom/);

  let n = 0;
  await study.optimize(
    () => {
      if (n++ % 2 === 0) throw new Flaky('odd');
      return 1;
    },
    { nTrials: 4, catch: [Flaky] },
  );
  assert.deepEqual(study.trials.slice(1).map((t) => t.state), ['FAIL', 'COMPLETE', 'FAIL', 'COMPLETE']);
});

test('TrialPruned ends the trial PRUNED with its last intermediate value', async () => {
  const study = await createStudy();
  await study.optimize(
    (t) => {
      t.report(0.9, 0);
      t.report(0.7, 1);
      t.report(0.5, 1); // same step twice: ignored, as Optuna
      throw new TrialPruned();
    },
    { nTrials: 1 },
  );
  const [t] = study.trials;
  assert.equal(t!.state, 'PRUNED');
  assert.deepEqual(t!.values, [0.7]);
  assert.deepEqual([...t!.intermediateValues], [[0, 0.9], [1, 0.7]]);
});

test('ask/tell: values, states, errors on double tell and bad input', async () => {
  const study = await createStudy({ directions: ['minimize', 'maximize'] });
  const a = study.ask();
  a.suggestFloat('x', 0, 1);
  const done = await study.tell(a, [1, 2]);
  assert.equal(done.state, 'COMPLETE');
  assert.deepEqual(done.values, [1, 2]);
  await assert.rejects(study.tell(a, [1, 2]), /already finished \(COMPLETE\)/);
  const b = study.ask();
  await assert.rejects(study.tell(b), /tell\(\) needs values or a state/);
  const failed = await study.tell(b, [1]);
  assert.equal(failed.state, 'FAIL');
  const c = study.ask();
  assert.equal((await study.tell(c.number, null, { state: 'PRUNED' })).state, 'PRUNED');
  await assert.rejects(study.tell(999, 1), /no trial number 999/);
  assert.throws(() => study.bestTrial, /single-objective/);
  assert.throws(() => study.ask().report(1, 0), /multi-objective/);
});

test('bestTrials is the Pareto front for several directions', async () => {
  const study = await createStudy({ directions: ['minimize', 'minimize'] });
  const points = [[1, 5], [2, 2], [5, 1], [3, 3], [2, 6], [1, 5]];
  for (const p of points) await study.tell(study.ask(), p);
  const front = study.bestTrials.map((t) => t.number);
  assert.deepEqual(front, [0, 1, 2, 5]);
});

test('enqueueTrial: fixed params run first, the rest sampled; skipIfExists', async () => {
  const study = await createStudy({ sampler: new RandomSampler({ seed: 5 }) });
  await study.enqueueTrial({ x: 0.25, kind: 'b' });
  await study.enqueueTrial({ x: 0.25, kind: 'b' }, { skipIfExists: true });
  await study.enqueueTrial({ x: 0.75 });
  await study.optimize((t) => t.suggestFloat('x', 0, 1) + (t.suggestCategorical('kind', ['a', 'b']) === 'a' ? 0 : 1), { nTrials: 3 });
  const t = study.trials;
  assert.equal(t.length, 3);
  assert.equal(t[0]!.params['x'], 0.25);
  assert.equal(t[0]!.params['kind'], 'b');
  assert.equal(t[1]!.params['x'], 0.75);
  assert.ok(['a', 'b'].includes(t[1]!.params['kind'] as string));
  assert.notEqual(t[2]!.params['x'], 0.25);
  await assert.rejects(study.enqueueTrial({ x: NaN }), /parameter "x" has value NaN/);
});

test('nJobs runs async trials concurrently; timeout, stop, callbacks and maxTrials bound the loop', async () => {
  const study = await createStudy();
  let inFlight = 0;
  let maxInFlight = 0;
  const objective = async (t: Trial) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 20));
    inFlight--;
    return t.suggestFloat('x', 0, 1);
  };
  // Each of the first trials waits until four are in flight together: only nJobs: 4 gets there.
  let together = false;
  const gated = async (t: Trial) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (inFlight === 4) together = true;
    await waitFor('four trials in flight at once', 10_000, () => together);
    inFlight--;
    return t.suggestFloat('x', 0, 1);
  };
  await study.optimize(gated, { nTrials: 8, nJobs: 4 });
  assert.equal(maxInFlight, 4);
  assert.equal(study.trials.length, 8);

  const t0 = Date.now();
  await study.optimize(objective, { timeout: 0.3 });
  const elapsed = Date.now() - t0;
  assert.ok(elapsed >= 300 && elapsed < 2000, `timeout run took ${elapsed} ms`);

  const seen: number[] = [];
  await study.optimize(objective, {
    callbacks: [(s, t) => { seen.push(t.number); if (seen.length === 3) s.stop(); }],
  });
  assert.equal(seen.length, 3);

  const before = study.trials.length;
  await study.optimize(objective, { maxTrials: before + 5, nJobs: 3 });
  assert.equal(study.trials.length, before + 5);
  const cb = new MaxTrialsCallback(before + 7);
  await study.optimize(objective, { callbacks: [cb.call] });
  assert.equal(study.getTrials({ states: ['COMPLETE'] }).length, before + 7);
});

test('createStudy/loadStudy: bad directions, duplicates, loadIfExists and unknown names', async () => {
  await assert.rejects(createStudy({ direction: 'down' as never }), /unknown direction "down"; use "minimize" or "maximize"/);
  await assert.rejects(createStudy({ directions: [] }), /non-empty/);
  const storage = new InMemoryStorage();
  await createStudy({ studyName: 's', storage });
  await assert.rejects(createStudy({ studyName: 's', storage }), /already exists; pass loadIfExists/);
  const again = await createStudy({ studyName: 's', storage, loadIfExists: true });
  assert.equal(again.studyName, 's');
  await assert.rejects(loadStudy({ studyName: 'nope', storage }), /no study named "nope".*studies here: s/);
  await assert.rejects(again.optimize(() => 1, { nTrials: -1 }), /nTrials must be a non-negative integer/);
  await assert.rejects(again.optimize(() => 1, { nJobs: 0 }), /nJobs must be a positive integer/);
});

test('log lines follow Optuna\'s format', async () => {
  setVerbosity('info');
  try {
    const study = await createStudy({ sampler: new RandomSampler({ seed: 9 }) });
    const { lines } = await captureLogs(() => study.optimize((t) => t.suggestInt('n', 1, 3), { nTrials: 3 }));
    const finished = lines.filter((l) => l.includes('finished'));
    assert.equal(finished.length, 3);
    for (const l of finished) {
      assert.match(l, /^\[I \d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] Trial \d finished with value: \d and parameters: \{'n': \d\}\. Best is trial \d with value: \d\.$/);
    }
  } finally {
    setVerbosity('warning');
  }
});

test('export: CSV and JSON round trip every trial', async () => {
  const study = await createStudy({ sampler: new RandomSampler({ seed: 11 }) });
  await study.optimize(
    (t) => {
      const k = t.suggestCategorical('k', ['a,b', 'say "hi"', null, true]);
      const x = t.suggestFloat('x', 0, 1);
      t.setUserAttr('note', { k });
      t.report(x, 0);
      if (x > 0.8) throw new TrialPruned();
      return x;
    },
    { nTrials: 25 },
  );
  const csv = toCsv(study);
  const { columns, rows } = trialsToRows(study);
  assert.deepEqual(columns.slice(0, 5), ['number', 'value', 'datetime_start', 'datetime_complete', 'duration']);
  assert.ok(columns.includes('params_k') && columns.includes('user_attrs_note') && columns.includes('state'));
  const parsed = parseCsv(csv);
  assert.deepEqual(parsed.columns, columns);
  assert.equal(parsed.rows.length, 25);
  parsed.rows.forEach((r, i) => {
    for (const c of columns) assert.equal(r[c], rows[i]![c] === null ? '' : String(rows[i]![c]), `row ${i} column ${c}`);
  });

  const back = parseTrialsJson(toJson(study));
  assert.deepEqual(back.directions, ['minimize']);
  assert.equal(back.trials.length, 25);
  back.trials.forEach((t, i) => {
    const o = study.trials[i]!;
    assert.equal(t.trialId, o.trialId);
    assert.equal(t.state, o.state);
    assert.deepEqual(t.values, o.values);
    assert.deepEqual(t.params, o.params);
    assert.deepEqual(t.distributions, o.distributions);
    assert.deepEqual([...t.intermediateValues], [...o.intermediateValues]);
    assert.deepEqual(t.userAttrs, o.userAttrs);
    assert.equal(t.datetimeStart?.getTime(), o.datetimeStart?.getTime());
  });
  assert.throws(() => parseTrialsJson('{"directions": [], "trials": [{"number": 0}]}'), /trial at index 0: number, trialId and owner are required/);
  assert.throws(() => parseTrialsJson('nope'), /does not parse/);
});

test('userAttrs are the study\'s own, looked up by id, even when its name resolves to another study', async () => {
  // Two peers that create the same name apart each hold a study of that name; getStudy(name) picks one
  // of them everywhere. This storage makes getStudy(name) answer with the other study, as a swarm can.
  class SameNameElsewhere extends InMemoryStorage {
    other: string | null = null;
    override getStudy(name: string) {
      const info = super.getStudy(name);
      return info && this.other ? (this.listStudies().find((s) => s.studyId === this.other) ?? info) : info;
    }
  }
  const storage = new SameNameElsewhere();
  const mine = await createStudy({ studyName: 'shared', storage });
  const theirs = await storage.createStudy({ studyName: 'shared-elsewhere', directions: ['minimize'], userAttrs: { owner: 'them' } });
  storage.other = theirs.studyId;
  mine.setUserAttr('owner', 'me');
  assert.deepEqual(mine.userAttrs, { owner: 'me' });
});

test('showProgressBar: the bar runs the trials, prints log lines above itself and gives the log back after', async () => {
  const study = await createStudy();
  const mine = (): void => {};
  const before = setLogSink(mine);
  try {
    await study.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 4, showProgressBar: true });
    assert.equal(study.trials.length, 4);
    assert.equal(setLogSink(mine), mine, 'the log sink is ours again once optimize returns');
  } finally {
    setLogSink(before);
  }
});
