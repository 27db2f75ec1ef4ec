import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createStudy, RandomSampler, setVerbosity, type Study, type Trial } from '../../src/index.js';
import {
  FanovaImportanceEvaluator,
  getParamImportances,
  ImportanceError,
  MeanDecreaseImpurityImportanceEvaluator,
  PedAnovaImportanceEvaluator,
} from '../../src/importance/index.js';

setVerbosity('warning');

async function makeStudy(name: string, n: number, seed: number, objective: (t: Trial) => number, direction: 'minimize' | 'maximize' = 'minimize'): Promise<Study> {
  const study = await createStudy({ studyName: name, sampler: new RandomSampler({ seed }), direction });
  await study.optimize(objective, { nTrials: n });
  return study;
}

/** x dominates, y matters a little, z and w are noise-level. */
const dominated = (t: Trial): number => {
  const x = t.suggestFloat('x', -5, 5);
  const y = t.suggestFloat('y', -5, 5);
  const z = t.suggestFloat('z', -5, 5);
  const w = t.suggestInt('w', 0, 10);
  return 10 * x * x + y + 0.01 * z + 0.001 * w;
};

test('fANOVA, MDI and PED-ANOVA rank the dominant parameter first', async () => {
  const study = await makeStudy('dominant', 200, 1, dominated);
  for (const evaluator of [new FanovaImportanceEvaluator({ seed: 0 }), new MeanDecreaseImpurityImportanceEvaluator({ seed: 0 }), new PedAnovaImportanceEvaluator()]) {
    const imp = getParamImportances(study, { evaluator });
    const names = Object.keys(imp);
    assert.deepEqual(new Set(names), new Set(['x', 'y', 'z', 'w']), evaluator.name);
    assert.equal(names[0], 'x', `${evaluator.name}: ${JSON.stringify(imp)}`);
    assert.ok(imp['x']! > 0.8, `${evaluator.name}: x explains most: ${JSON.stringify(imp)}`);
    const total = Object.values(imp).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - 1) < 1e-9, 'normalized');
  }
  // fANOVA also separates the second parameter from the noise.
  const f = getParamImportances(study, { evaluator: new FanovaImportanceEvaluator({ seed: 0 }) });
  assert.equal(Object.keys(f)[1], 'y', JSON.stringify(f));
});

test('fANOVA is seedable, handles categorical params and maximize studies', async () => {
  const study = await makeStudy(
    'categorical',
    150,
    2,
    (t) => {
      const c = t.suggestCategorical('opt', ['sgd', 'adam', 'rmsprop']);
      const lr = t.suggestFloat('lr', 1e-5, 1e-1, { log: true });
      return (c === 'adam' ? 5 : c === 'sgd' ? 0 : 2) + 0.1 * Math.log10(lr);
    },
    'maximize',
  );
  const a = getParamImportances(study, { evaluator: new FanovaImportanceEvaluator({ seed: 3 }) });
  const b = getParamImportances(study, { evaluator: new FanovaImportanceEvaluator({ seed: 3 }) });
  assert.deepEqual(a, b, 'same seed, same importances');
  assert.equal(Object.keys(a)[0], 'opt', JSON.stringify(a));
  assert.throws(() => new FanovaImportanceEvaluator({ nTrees: 0 }), ImportanceError);
  assert.throws(() => getParamImportances(study, { params: ['nope'] }), /param "nope"/);
});

// ---------------------------------------------------------------- parity with Optuna 3.1

const PY = '/usr/bin/python3';
function optunaAvailable(): string | null {
  if (!existsSync(PY)) return `${PY} is absent`;
  try {
    execFileSync(PY, ['-c', 'import optuna, sklearn'], { stdio: 'pipe' });
    return null;
  } catch {
    return `${PY} has no optuna/sklearn (apt install python3-optuna python3-sklearn)`;
  }
}

function spearman(a: Record<string, number>, b: Record<string, number>): number {
  const keys = Object.keys(a);
  const rank = (m: Record<string, number>) => {
    const sorted = [...keys].sort((x, y) => m[y]! - m[x]!);
    return new Map(sorted.map((k, i) => [k, i]));
  };
  const ra = rank(a);
  const rb = rank(b);
  const n = keys.length;
  const d2 = keys.reduce((s, k) => s + (ra.get(k)! - rb.get(k)!) ** 2, 0);
  return 1 - (6 * d2) / (n * (n * n - 1));
}

const skipOptuna = optunaAvailable();
test('fANOVA ranks parameters as Optuna 3.1 does on the same trials', { skip: skipOptuna ?? false }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'peertune-importance-'));
  try {
    const cases: [string, (t: Trial) => number, 'minimize' | 'maximize'][] = [
      ['weighted', (t) => {
        const w = [8, 4, 2, 1, 0.05];
        return w.reduce((s, k, i) => s + k * Math.abs(t.suggestFloat(`p${i}`, -1, 1)), 0);
      }, 'minimize'],
      ['dominant', dominated, 'minimize'],
      ['mixed', (t) => {
        const c = t.suggestCategorical('kind', ['a', 'b', 'c']);
        const n = t.suggestInt('layers', 1, 8);
        const lr = t.suggestFloat('lr', 1e-4, 1, { log: true });
        return (c === 'a' ? 3 : c === 'b' ? 1 : 0) + 0.5 * n + 0.05 * lr;
      }, 'maximize'],
      ['interaction', (t) => {
        const x = t.suggestFloat('x', 0, 1);
        const y = t.suggestFloat('y', 0, 1);
        const z = t.suggestFloat('z', 0, 1);
        return Math.sin(6 * x) * 3 + x * y + 0.2 * z;
      }, 'minimize'],
    ];
    const report: string[] = [];
    for (const [name, fn, direction] of cases) {
      const study = await makeStudy(name, 120, 7, fn, direction);
      const file = join(dir, `${name}.json`);
      const trials = study.trials.filter((t) => t.state === 'COMPLETE').map((t) => ({ params: t.params, distributions: t.distributions, value: t.value }));
      await writeFile(file, JSON.stringify({ direction, trials }));
      const py = JSON.parse(execFileSync(PY, [new URL('./optuna_fanova.py', import.meta.url).pathname, file], { encoding: 'utf8' })) as { fanova: Record<string, number>; mdi: Record<string, number> };
      const ours = getParamImportances(study, { evaluator: new FanovaImportanceEvaluator({ seed: 0 }) });
      const oursMdi = getParamImportances(study, { evaluator: new MeanDecreaseImpurityImportanceEvaluator({ seed: 0 }) });
      const rho = spearman(ours, py.fanova);
      const rhoMdi = spearman(oursMdi, py.mdi);
      report.push(`${name}: ours ${JSON.stringify(round(ours))} optuna ${JSON.stringify(round(py.fanova))} rho ${rho.toFixed(2)} (mdi rho ${rhoMdi.toFixed(2)})`);
      assert.equal(Object.keys(ours)[0], Object.keys(py.fanova)[0], `${name}: same top parameter\n${report.join('\n')}`);
      assert.ok(rho >= 0.9, `${name}: rank correlation ${rho}\n${report.join('\n')}`);
    }
    console.log(report.join('\n'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

function round(m: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, +v.toFixed(3)]));
}
