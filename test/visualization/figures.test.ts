/**
 * The figure functions from code: the numbers they plot (best-so-far, EDF, binned contour means,
 * Pareto front, hypervolume), Optuna's names and errors, and writeHtml opening offline in Chromium
 * with the plot drawn and no network request.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { createStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { hypervolume } from '../../src/hypervolume.js';
import {
  hypervolumeHistory,
  nonDominatedIndices,
  plotContour,
  plotEdf,
  plotIntermediateValues,
  plotOptimizationHistory,
  plotParallelCoordinate,
  plotParamImportances,
  plotParetoFront,
  plotRank,
  plotSlice,
  plotTimeline,
  PlotError,
  writeHtml,
} from '../../src/visualization/index.js';
import { decodeTrial, encodeTrial, RowHeader } from '../../src/visualization/data.js';
import { launchBrowser, noChromium } from '../dashboard/helpers.js';

setVerbosity('error');

async function study(n = 40) {
  const s = await createStudy({ sampler: new RandomSampler({ seed: 4 }), direction: 'maximize' });
  await s.optimize(
    (t) => {
      const x = t.suggestFloat('x', 0, 1);
      const c = t.suggestCategorical('c', ['a', 'b']);
      t.report(x, 0);
      return x + (c === 'a' ? 1 : 0);
    },
    { nTrials: n },
  );
  return s;
}

test('history: markers are the COMPLETE values, the best line is the running max for maximize', async () => {
  const s = await study();
  const fig = plotOptimizationHistory(s);
  const values = s.trials.map((t) => t.value!);
  assert.deepEqual(fig.data[0]!['y'], values);
  // The best line: a step at every trial that improved the running max, then flat to the last trial.
  let m = -Infinity;
  const steps: [number, number][] = [];
  s.trials.forEach((t) => {
    if (t.value! > m || steps.length === 0) steps.push([t.number, (m = Math.max(m, t.value!))]);
  });
  const last = s.trials.at(-1)!.number;
  if (steps.at(-1)![0] !== last) steps.push([last, m]);
  assert.deepEqual(fig.data[1]!['x'], steps.map((p) => p[0]));
  assert.deepEqual(fig.data[1]!['y'], steps.map((p) => p[1]));
  assert.equal((fig.data[1]!['y'] as number[]).at(-1), s.bestValue);
  // Past maxPoints: a stride of the trials plus every improvement, the best line unchanged.
  const thin = plotOptimizationHistory(s, { maxPoints: 10 });
  const shown = thin.data[0]!['customdata'] as number[];
  assert.ok(shown.length < 40 && shown.length >= 10);
  for (const [n] of steps.slice(0, -1)) assert.ok(shown.includes(n), `improvement at trial ${n} kept`);
  assert.deepEqual(thin.data[1]!['y'], fig.data[1]!['y']);
  assert.equal((plotOptimizationHistory(s, { logY: true, xAxis: 'datetime_complete' }).layout['xaxis'] as { type: string }).type, 'date');
});

test('EDF, contour bins, slice, rank, parcoords, intermediate and timeline have the study in them', async () => {
  const s = await study();
  const edf = plotEdf(s);
  const xs = edf.data[0]!['x'] as number[];
  assert.deepEqual(xs, s.trials.map((t) => t.value!).sort((a, b) => a - b));
  assert.equal((edf.data[0]!['y'] as number[]).at(-1), 1);

  const contour = plotContour(s, { params: ['x', 'c'], bins: 4 });
  const z = contour.data[0]!['z'] as (number | null)[][];
  // Cell (x bin 0..3, c = a|b): the mean of the values of the trials that fall in it.
  for (let j = 0; j < 2; j++) {
    for (let i = 0; i < 4; i++) {
      const inCell = s.trials.filter((t) => Math.min(3, Math.floor((t.params['x'] as number) * 4)) === i && t.params['c'] === ['a', 'b'][j]);
      const want = inCell.length ? inCell.reduce((a, t) => a + t.value!, 0) / inCell.length : null;
      if (want === null) assert.equal(z[j]![i], null);
      else assert.ok(Math.abs(z[j]![i]! - want) < 1e-12);
    }
  }
  assert.equal((contour.data[1]!['x'] as number[]).length, 40);
  assert.throws(() => plotContour(s, { params: ['x', 'nope'] }), PlotError);

  assert.equal(plotSlice(s).data.length, 2);
  assert.equal((plotRank(s).data[0]!['x'] as unknown[]).length, 40);
  const pc = plotParallelCoordinate(s);
  assert.deepEqual(pc.trialNumbers, s.trials.map((t) => t.number));
  assert.deepEqual((pc.data[0]!['dimensions'] as { label: string }[]).map((d) => d.label), ['Objective Value', 'x', 'c']);
  const sampled = plotParallelCoordinate(s, { maxLines: 10 });
  assert.equal(((sampled.data[0]!['dimensions'] as { values: unknown[] }[])[1]!.values).length, 10, 'a stride sample of lines is drawn');
  assert.equal(sampled.axes![1]!.values.length, 40, 'brushes still see every trial');
  assert.deepEqual(sampled.axes![1]!.values, s.trials.map((t) => t.params['x']));
  assert.equal((plotTimeline(s, { nRecentTrials: 5 }).data[0]!['x'] as unknown[]).length, 5);
  assert.equal(plotIntermediateValues(s).data.length, 40, 'one curve per trial');
  assert.equal(plotIntermediateValues(s, { maxSeparateTraces: 10 }).data.length, 1, 'many curves share one trace');
  assert.equal(plotTimeline(s).data.length, 1);
  const imp = plotParamImportances(s);
  assert.deepEqual(new Set(imp.data[0]!['y'] as string[]), new Set(['x', 'c']));
});

test('Pareto front and hypervolume', async () => {
  // 2-D: front of (1,3) (2,2) (3,1) with (3,3) dominated; HV to (4,4) = 3 + 2 + 1 = 6.
  const pts = [[1, 3], [2, 2], [3, 1], [3, 3]];
  assert.deepEqual(nonDominatedIndices(pts), [0, 1, 2]);
  assert.equal(hypervolume(pts, [4, 4]), 6);
  // 3-D: unit cube corner point (0,0,0) to ref (1,1,1) is 1; two boxes overlapping.
  assert.equal(hypervolume([[0, 0, 0]], [1, 1, 1]), 1);
  assert.ok(Math.abs(hypervolume([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]], [1, 1, 1]) - 0.5) < 1e-12);

  const s = await createStudy({ directions: ['minimize', 'maximize'], sampler: new RandomSampler({ seed: 2 }) });
  await s.optimize((t) => {
    const a = t.suggestFloat('a', 0, 1);
    return [a, a * a];
  }, { nTrials: 20 });
  const fig = plotParetoFront(s);
  assert.deepEqual(new Set(fig.trialNumbers), new Set(s.bestTrials.map((t) => t.number)), 'same front as study.bestTrials');
  const h = hypervolumeHistory(s, [1, 0]);
  assert.equal(h.values.length, 20);
  for (let i = 1; i < h.values.length; i++) assert.ok(h.values[i]! >= h.values[i - 1]!, 'hypervolume never drops');
  assert.throws(() => plotParetoFront({ directions: ['minimize'], trials: [] }), PlotError);
  assert.throws(() => plotOptimizationHistory(s), /needs a target/);
});

test('trial rows round-trip through the wire encoding', async () => {
  const s = await study(5);
  const index = new RowHeader();
  for (const t of s.trials) {
    const row = encodeTrial(t, index);
    assert.equal(typeof row[0], 'number', 'owner:seq ids travel as the seq');
    const back = decodeTrial(JSON.parse(JSON.stringify(row)), index.params, index.owners);
    assert.equal(back.trialId, t.trialId);
    assert.equal(back.owner, t.owner);
    assert.deepEqual(back.params, t.params);
    assert.deepEqual(back.values, t.values);
    assert.deepEqual([...back.intermediateValues], [...t.intermediateValues]);
    assert.equal(back.state, t.state);
    assert.equal(back.datetimeStart?.getTime(), t.datetimeStart?.getTime());
  }
  // An id that is not owner:seq travels whole.
  const odd = { ...s.trials[0]!, trialId: 'elsewhere/7' };
  assert.equal(decodeTrial(encodeTrial(odd, index), index.params, index.owners).trialId, 'elsewhere/7');
});

test('writeHtml output opens offline with the plot drawn', { skip: noChromium }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peertune-html-'));
  const browser = await launchBrowser();
  try {
    const s = await study();
    const file = join(dir, 'history.html');
    await writeHtml(plotOptimizationHistory(s), file);
    assert.ok((await stat(file)).size > 1_000_000, 'Plotly is inlined');
    const page = await browser.newPage();
    const requests: string[] = [];
    const errors: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith('file:')) requests.push(r.url());
    });
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(pathToFileURL(file).href);
    await page.waitForSelector('#plot .main-svg');
    const points = await page.$$eval('#plot .scatterlayer .point', (p) => p.length);
    assert.equal(points, 40);
    assert.deepEqual(requests, [], 'no network requests');
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
    await rm(dir, { recursive: true, force: true });
  }
});
