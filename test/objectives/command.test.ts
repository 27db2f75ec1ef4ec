// Command objectives through the library: real child processes speaking the line protocol, the Python
// client, and every way a child can go wrong (each must FAIL its trial with a reason while the loop
// goes on).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createStudy, setVerbosity } from '../../src/index.js';
import { CommandObjectiveError, commandObjective } from '../../src/objectives/command.js';
import { ThresholdPruner } from '../../src/pruners/threshold.js';

setVerbosity('error');
const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, '..', 'fixtures', 'cli');
const fixture = (name: string) => join(fixtures, name);

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import json'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('a raw-protocol child: suggest, user attrs, report and result', async () => {
  const study = await createStudy();
  await study.optimize(commandObjective({ command: [process.execPath, fixture('protocol-child.mjs')] }), { nTrials: 3, catch: [CommandObjectiveError] });
  const trials = study.trials;
  assert.equal(trials.length, 3);
  for (const t of trials) {
    assert.equal(t.state, 'COMPLETE', `trial ${t.number}: ${String(t.systemAttrs['failReason'])}`);
    const x = t.params['x'] as number;
    assert.ok(Math.abs(t.value! - (x - 2) ** 2) < 1e-12);
    assert.equal(t.userAttrs['kind_seen'], t.params['kind']);
    assert.equal(t.intermediateValues.size, 5);
    assert.equal(t.systemAttrs['exitCode'], 0);
  }
});

test('a child told to prune ends PRUNED', async () => {
  const study = await createStudy({ pruner: new ThresholdPruner({ upper: 0 }) });
  await study.optimize(commandObjective({ command: [process.execPath, fixture('protocol-child.mjs')] }), { nTrials: 2 });
  for (const t of study.trials) {
    assert.equal(t.state, 'PRUNED');
    assert.equal(t.intermediateValues.size, 1, 'pruned at the first report');
  }
});

test('a shell command printing only its value is an objective', async () => {
  const study = await createStudy();
  await study.optimize(commandObjective({ command: [fixture('echo-value.sh')] }), { nTrials: 1 });
  assert.equal(study.trials[0]!.state, 'COMPLETE');
  assert.equal(study.trials[0]!.value, 0.5);
});

test('garbage, exit 1, a hang and a missing program each FAIL with a reason; the loop goes on', async () => {
  const study = await createStudy();
  const run = (command: string[], trialTimeout?: number) =>
    study.optimize(commandObjective({ command, trialTimeout }), { nTrials: 1, catch: [CommandObjectiveError] });
  const t0 = Date.now();
  await run([process.execPath, fixture('garbage.mjs')]);
  await run([process.execPath, fixture('exit1.mjs')]);
  await run([process.execPath, fixture('hang.mjs')], 1);
  await run(['/nonexistent/peertune-no-such-program']);
  await run([process.execPath, fixture('protocol-child.mjs')]);
  const [garbage, exit1, hang, missing, good] = study.trials;
  assert.equal(study.trials.length, 5);
  for (const t of [garbage, exit1, hang, missing]) assert.equal(t!.state, 'FAIL');
  assert.equal(good!.state, 'COMPLETE', 'the worker kept going after the failures');

  assert.match(String(garbage!.systemAttrs['failReason']), /not protocol JSON.*epoch 1: loss=0\.3/);
  assert.match(String(garbage!.systemAttrs['stderrTail']), /about to print garbage/);

  assert.match(String(exit1!.systemAttrs['failReason']), /exited with code 1/);
  assert.match(String(exit1!.systemAttrs['stderrTail']), /CUDA out of memory \(simulated\)/);
  assert.equal(exit1!.systemAttrs['exitCode'], 1);
  assert.equal(typeof exit1!.params['x'], 'number', 'the parameter it asked for is recorded');

  assert.match(String(hang!.systemAttrs['failReason']), /per-trial timeout of 1 s/);
  assert.match(String(hang!.systemAttrs['stderrTail']), /hanging/);

  assert.match(String(missing!.systemAttrs['failReason']), /could not start/);
  assert.ok(Date.now() - t0 < 15_000, 'the hang was cut by the timeout');
});

test('bad requests are refused without failing the trial; unknown ops fail it', async () => {
  const study = await createStudy();
  const script = `
    const rl = require('node:readline').createInterface({ input: process.stdin });
    const it = rl[Symbol.asyncIterator]();
    const ask = async (m) => { process.stdout.write(JSON.stringify(m) + '\\n'); return JSON.parse((await it.next()).value); };
    (async () => {
      const bad = await ask({ op: 'suggest', name: 'lr', distribution: { type: 'float', low: 1, high: 0 } });
      console.error('refusal: ' + bad.error);
      if (bad.ok) process.exit(3);
      await ask({ op: 'result', value: 1 });
      rl.close();
    })();`;
  await study.optimize(commandObjective({ command: [process.execPath, '-e', script] }), { nTrials: 1 });
  assert.equal(study.trials[0]!.state, 'COMPLETE');
  await study.optimize(commandObjective({ command: [process.execPath, '-e', `console.log(JSON.stringify({op:'launch_missiles'}))`] }), {
    nTrials: 1,
    catch: [CommandObjectiveError],
  });
  assert.match(String(study.trials[1]!.systemAttrs['failReason']), /unknown op "launch_missiles"/);
});

test('the Python client through the protocol', { skip: hasPython() ? false : 'python3 is not installed' }, async () => {
  const study = await createStudy({ pruner: new ThresholdPruner({ upper: 10 }) });
  await study.optimize(commandObjective({ command: ['python3', fixture('python_objective.py')] }), { nTrials: 3, catch: [CommandObjectiveError] });
  for (const t of study.trials) {
    assert.equal(t.state, 'COMPLETE', `trial ${t.number}: ${String(t.systemAttrs['failReason'])} ${String(t.systemAttrs['stderrTail'])}`);
    assert.deepEqual(Object.keys(t.params).sort(), ['activation', 'layers', 'lr']);
    assert.equal(t.userAttrs['epochs'], 4);
    assert.equal(t.intermediateValues.size, 4);
    const lr = t.params['lr'] as number;
    const expected = Math.abs(lr - 0.1) + 0.1 * (t.params['layers'] as number) + (t.params['activation'] === 'relu' ? 0 : 0.05);
    assert.ok(Math.abs(t.value! - expected) < 1e-9);
  }
  // Pruning through the client: every report is above the threshold.
  const pruning = await createStudy({ pruner: new ThresholdPruner({ upper: -1 }) });
  await pruning.optimize(commandObjective({ command: ['python3', fixture('python_objective.py')] }), { nTrials: 2 });
  for (const t of pruning.trials) assert.equal(t.state, 'PRUNED');
});

test('a multi-objective result and a wrong number of values', async () => {
  const study = await createStudy({ directions: ['minimize', 'maximize'] });
  const emit = (line: string) => commandObjective({ command: [process.execPath, '-e', `console.log(${JSON.stringify(line)})`] });
  await study.optimize(emit('{"op":"result","values":[1.5,2]}'), { nTrials: 1 });
  await study.optimize(emit('[3, 4]'), { nTrials: 1 });
  await study.optimize(emit('{"op":"result","value":1}'), { nTrials: 1 });
  const [a, b, c] = study.trials;
  assert.deepEqual(a!.values, [1.5, 2]);
  assert.deepEqual(b!.values, [3, 4]);
  assert.equal(c!.state, 'FAIL');
  assert.match(String(c!.systemAttrs['failReason']), /1 value\(s\) but the study has 2 direction/);
});

test('a child flooding stdout without newlines is stopped', async () => {
  const study = await createStudy();
  const flood = `const b = 'x'.repeat(65536); const w = () => process.stdout.write(b, w); w();`;
  await study.optimize(commandObjective({ command: [process.execPath, '-e', flood], trialTimeout: 20 }), { nTrials: 1, catch: [CommandObjectiveError] });
  assert.equal(study.trials[0]!.state, 'FAIL');
  assert.match(String(study.trials[0]!.systemAttrs['failReason']), /more than 1048576 bytes on stdout without a newline/);
});
