import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { createStudy, RandomSampler, setVerbosity } from '../../src/index.js';
import { SUITE_DIR } from '../../bench/lib.js';
import { evalConstant, evaluate, groupFunctions, loadSuite, suiteObjective, SuiteError, type SuiteValue } from '../../bench/suite.js';

interface Vectors {
  functions: Record<string, { params: Record<string, SuiteValue>; value: number }[]>;
}
const vectors = JSON.parse(readFileSync(path.join(SUITE_DIR, 'suite_vectors.json'), 'utf8')) as Vectors;
const suite = loadSuite();

describe('benchmark suite functions', () => {
  it('covers every function with vectors and every public function', () => {
    assert.deepEqual(Object.keys(vectors.functions).sort(), suite.functions.map((f) => f.name).sort());
    assert.deepEqual(groupFunctions().map((f) => f.name), ['branin', 'hartmann6', 'rosenbrock5', 'ackley10', 'mlp_surrogate']);
  });

  for (const f of suite.functions) {
    it(`${f.name} reproduces every reference vector within 1e-9`, () => {
      const vs = vectors.functions[f.name]!;
      assert.ok(vs.length > 0);
      for (const v of vs) {
        const got = evaluate(f, v.params);
        assert.ok(Math.abs(got - v.value) <= 1e-9, `${f.name}(${JSON.stringify(v.params)}) = ${got}, expected ${v.value}`);
      }
    });

    it(`${f.name}: each documented argmin gives the documented optimum`, () => {
      for (const x of [f.optimum.argmin, ...(f.optimum.other_argmins ?? [])]) {
        const got = evaluate(f, x);
        assert.ok(Math.abs(got - f.optimum.value) <= 1e-9, `${f.name}(${JSON.stringify(x)}) = ${got}, optimum is ${f.optimum.value}`);
      }
    });
  }

  it('parses constant expressions and rejects malformed ones', () => {
    assert.equal(evalConstant('5.1/(4*pi^2)'), 5.1 / (4 * Math.PI ** 2));
    assert.equal(evalConstant('2*pi'), 2 * Math.PI);
    assert.equal(evalConstant(-2.5), -2.5);
    assert.throws(() => evalConstant('5/'), SuiteError);
    assert.throws(() => evalConstant('2*tau'), /cannot parse constant "2\*tau"/);
  });

  it('names the parameter when a point is bad', () => {
    assert.throws(() => evaluate('branin', { x1: 1 }), /"x2" must be a finite number/);
    assert.throws(() => evaluate('mlp_surrogate', { lr: 0.001, n_layers: 3, hidden: 256, optimizer: 'lbfgs', dropout: 0.2 }), /"optimizer" must be one of adam, sgd, rmsprop/);
    assert.throws(() => evaluate('nope', {}), /no suite function named "nope"/);
  });
});

describe('suiteObjective', () => {
  it('suggests in order with conditions, steps and log, and returns the function value', async () => {
    setVerbosity('silent');
    const f = suite.functions.find((x) => x.name === 'mlp_surrogate')!;
    const study = await createStudy({ sampler: new RandomSampler({ seed: 7 }) });
    await study.optimize(suiteObjective(f), { nTrials: 60 });
    const trials = study.getTrials({ states: ['COMPLETE'] });
    assert.equal(trials.length, 60);
    let sgd = 0;
    for (const t of trials) {
      assert.deepEqual(Object.keys(t.params), t.params['optimizer'] === 'sgd'
        ? ['lr', 'n_layers', 'hidden', 'optimizer', 'momentum', 'dropout']
        : ['lr', 'n_layers', 'hidden', 'optimizer', 'dropout']);
      if (t.params['optimizer'] === 'sgd') sgd++;
      assert.equal((t.params['hidden'] as number) % 16, 0);
      assert.ok(Number.isInteger(t.params['n_layers']));
      assert.equal(t.values![0], evaluate(f, t.params as Record<string, SuiteValue>));
    }
    assert.ok(sgd > 0 && sgd < 60, 'the conditional branch is taken sometimes');
    assert.ok(study.bestValue >= f.optimum.value);
  });
});
