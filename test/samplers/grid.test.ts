/**
 * GridSampler through the public API: every grid point once, then the study stops; seeded order;
 * workers sharing a storage split the grid; exhausted grids repeat a point with a warning; clear
 * errors for parameters and values that are not in the grid.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { DistributionError, InMemoryStorage, createStudy, loadStudy, setLogSink, setVerbosity, type Study, type Trial } from '../../src/index.js';
import { GridSampler } from '../../src/samplers/grid.js';

setVerbosity('warning');

const space = { x: [1, 2, 3], kind: ['a', 'b'], flag: [true, false] };
const GRID_SIZE = 12;

function objective(trial: Trial): number {
  const x = trial.suggestInt('x', 1, 3);
  const kind = trial.suggestCategorical('kind', ['a', 'b']);
  const flag = trial.suggestCategorical('flag', [true, false]);
  return x + (kind === 'a' ? 0 : 10) + (flag ? 0 : 100);
}

const key = (p: Readonly<Record<string, unknown>>) => JSON.stringify([p['x'], p['kind'], p['flag']]);
const gridIds = (s: Study) => s.trials.map((t) => t.systemAttrs['gridId'] as number);

/** Captures warning lines while `fn` runs. */
async function warningsDuring(fn: () => Promise<void>): Promise<string[]> {
  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    await fn();
  } finally {
    setLogSink(prev);
  }
  return lines.filter((l) => l.startsWith('[W'));
}

test('grid: every point is visited exactly once, then the study stops itself', async () => {
  const sampler = new GridSampler(space, { seed: 1 });
  assert.equal(sampler.gridSize, GRID_SIZE);
  const s = await createStudy({ sampler });
  const warnings = await warningsDuring(() => s.optimize(objective, { nTrials: 50 }));
  assert.equal(s.trials.length, GRID_SIZE, 'optimize stopped once the grid was done');
  assert.deepEqual(warnings, []);
  assert.ok(s.trials.every((t) => t.state === 'COMPLETE'));
  assert.equal(new Set(s.trials.map((t) => key(t.params))).size, GRID_SIZE);
  assert.deepEqual([...gridIds(s)].sort((a, b) => a - b), [...Array(GRID_SIZE).keys()]);
  for (const t of s.trials) assert.deepEqual(t.params, sampler.point(t.systemAttrs['gridId'] as number));
  assert.equal(s.bestValue, 1);
});

test('grid: the visiting order comes from the seed', async () => {
  const order = async (seed: number) => {
    const s = await createStudy({ sampler: new GridSampler(space, { seed }) });
    await s.optimize(objective, { nTrials: GRID_SIZE });
    return gridIds(s);
  };
  const a = await order(7);
  assert.deepEqual(await order(7), a);
  assert.notDeepEqual(await order(8), a);
});

test('grid: the point is claimed in the trial system attrs at ask(), so others skip it', async () => {
  const s = await createStudy({ sampler: new GridSampler(space, { seed: 3 }) });
  const first = s.ask();
  const id = first.snapshot().systemAttrs['gridId'];
  assert.equal(typeof id, 'number');
  const running = new Set<number>([id as number]);
  const others: Trial[] = [];
  for (let i = 1; i < GRID_SIZE; i++) {
    const t = s.ask();
    const g = t.snapshot().systemAttrs['gridId'] as number;
    assert.ok(!running.has(g), `grid point ${g} handed out twice while in flight`);
    running.add(g);
    others.push(t);
  }
  assert.equal(running.size, GRID_SIZE);
  // Trials that failed count as visited too: finishing everything leaves no point to revisit.
  await warningsDuring(async () => void (await s.tell(first, null, { state: 'FAIL' })));
  for (const t of others) await s.tell(t, objective(t));
  assert.equal(s.trials.filter((t) => t.state === 'FAIL').length, 1);
});

test('grid: two workers sharing a storage split the grid without overlap', async () => {
  const storage = new InMemoryStorage();
  const a = await createStudy({ studyName: 'grid-shared', storage, sampler: new GridSampler(space, { seed: 1 }) });
  const b = await loadStudy({ studyName: 'grid-shared', storage, sampler: new GridSampler(space, { seed: 2 }) });
  const slow = async (trial: Trial) => {
    const v = objective(trial);
    await sleep(2);
    return v;
  };
  await Promise.all([a.optimize(slow, { nTrials: 6, nJobs: 2 }), b.optimize(slow, { nTrials: 6, nJobs: 2 })]);
  assert.equal(a.trials.length, GRID_SIZE);
  assert.equal(new Set(a.trials.map((t) => key(t.params))).size, GRID_SIZE);
});

test('grid: running an exhausted grid again repeats one random point with a warning, then stops', async () => {
  const s = await createStudy({ sampler: new GridSampler({ lr: [0.1, 0.01] }, { seed: 5 }) });
  const f = (t: Trial) => t.suggestFloat('lr', 0.001, 1, { log: true });
  await s.optimize(f, { nTrials: 10 });
  assert.equal(s.trials.length, 2);
  const warnings = await warningsDuring(() => s.optimize(f, { nTrials: 10 }));
  assert.equal(s.trials.length, 3, 'exactly one extra trial');
  assert.ok([0.1, 0.01].includes(s.trials[2]!.params['lr'] as number));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /GridSampler is re-evaluating a grid point because every point has been taken/);
});

test('grid: a parameter outside the grid or a grid value outside the suggested range is an error', async () => {
  const s = await createStudy({ sampler: new GridSampler(space, { seed: 1 }) });
  const t = s.ask();
  assert.throws(
    () => t.suggestFloat('lr', 0, 1),
    (e: Error) => e instanceof DistributionError && /GridSampler: parameter "lr" is not in the grid; the grid has "flag", "kind", "x"/.test(e.message),
  );
  assert.throws(() => t.suggestInt('x', 10, 20), /GridSampler: grid value [123] of parameter "x" is outside the suggested IntDistribution\(low=10, high=20/);
  assert.throws(() => t.suggestCategorical('kind', ['c', 'd']), /grid value "[ab]" of parameter "kind" is outside the suggested CategoricalDistribution/);
  // Through optimize the error fails the trial and is rethrown, as any objective error.
  const warnings = await warningsDuring(() =>
    assert.rejects(s.optimize((trial) => trial.suggestFloat('lr', 0, 1), { nTrials: 1 }), /parameter "lr" is not in the grid/),
  );
  assert.match(warnings.join('\n'), /failed with parameters: \{\} because of the following error: the objective raised DistributionError/);
  assert.equal(s.trials.at(-1)!.state, 'FAIL');
});

test('grid: an enqueued trial keeps its fixed params and must give every parameter', async () => {
  const s = await createStudy({ sampler: new GridSampler(space, { seed: 1 }) });
  await s.enqueueTrial({ x: 2, kind: 'b', flag: true });
  await s.enqueueTrial({ x: 3 });
  const full = s.ask();
  assert.equal(objective(full), 12);
  assert.equal(full.snapshot().systemAttrs['gridId'], undefined);
  const partial = s.ask();
  assert.equal(partial.suggestInt('x', 1, 3), 3);
  assert.throws(() => partial.suggestCategorical('kind', ['a', 'b']), /has no grid point.*enqueued trial must give every parameter/);
});

test('grid: bad search spaces are rejected with the parameter named', () => {
  assert.throws(() => new GridSampler(null as never), /GridSampler: searchSpace must be an object/);
  assert.throws(() => new GridSampler({ x: [] }), /GridSampler: the values for parameter "x" must be a non-empty array/);
  assert.throws(() => new GridSampler({ x: 3 as never }), /values for parameter "x" must be a non-empty array, got 3/);
  assert.throws(() => new GridSampler({ x: [1, NaN] }), /parameter "x" has value NaN; grid values must be finite numbers, strings, booleans or null/);
  assert.throws(() => new GridSampler({ x: [{}] as never }), /parameter "x" has value/);
  assert.throws(() => new GridSampler({ x: [1] }, { sed: 1 } as never), /GridSampler: unknown option "sed"; the only option is seed/);
  assert.doesNotThrow(() => new GridSampler({ x: [null, 'a', 1, false] }));
});
