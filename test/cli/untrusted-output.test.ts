// Strings from the network reach the terminal only escaped (issue 15 F16), CSV cells cannot be live
// formulas, and a command objective's stderr line is bounded (F17). The hostile values are written
// into a real replica (as a peer's trials would arrive), then read with the built CLI.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createStudy } from '../../src/study.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { CommandObjectiveError, commandObjective } from '../../src/objectives/command.js';
import { terminalSafe } from '../../src/cli/format.js';
import { ensureBuilt, runCli } from '../fixtures/cli/helpers.js';

const ESC_CLEAR = '\u001b[2J\u001b[H';
const FORGED = '\n[I 2026-01-01 00:00:00,000] Trial 9 finished with value: -1e9';
const C1_CSI = '\u009b31m';

test('terminalSafe escapes controls, keeps text; oneLine escapes newlines too', () => {
  assert.equal(terminalSafe(`a${ESC_CLEAR}b`), 'a\\u001b[2J\\u001b[Hb');
  assert.equal(terminalSafe('line1\nline2\tx'), 'line1\nline2\tx');
  assert.equal(terminalSafe('x\ry', { oneLine: true }), 'x\\u000dy');
  assert.equal(terminalSafe(FORGED, { oneLine: true }).includes('\n'), false);
  assert.equal(terminalSafe(C1_CSI), '\\u009b31m');
  assert.equal(terminalSafe('naïve 漢字 ✓'), 'naïve 漢字 ✓');
});

test('trials, export and best-trial print network strings escaped; CSV cells are not formulas', async () => {
  ensureBuilt();
  const dataDir = join(mkdtempSync(join(tmpdir(), 'peertune-f16-')), 'peer');
  const storage = await openPeerStorage({ dataDir, listen: [] });
  const study = await createStudy({ studyName: 'hostile', storage });
  await study.optimize(
    (t) => {
      t.suggestCategorical('kind', [`rbf${ESC_CLEAR}`]);
      t.setUserAttr('note', `=HYPERLINK("http://example.invalid","click")${FORGED}`);
      t.setUserAttr('c1', C1_CSI);
      return 1;
    },
    { nTrials: 1 },
  );
  await storage.close();
  const common = ['--study-name', 'hostile', '--data-dir', dataDir];
  for (const args of [['trials'], ['trials', '-f', 'json'], ['trials', '-f', 'csv'], ['best-trial'], ['best-trial', '-f', 'json'], ['export', '-f', 'csv'], ['export', '-f', 'json']]) {
    const r = await runCli([...args, ...common]);
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout;
    assert.doesNotMatch(out, /\u001b/, `${args.join(' ')}: no raw ESC`);
    assert.doesNotMatch(out, /\u009b/, `${args.join(' ')}: no raw C1 CSI`);
    assert.doesNotMatch(out, /^\[I 2026-01-01/m, `${args.join(' ')}: no forged log line at the start of a line`);
    assert.match(out, /\\u001b\[2J/, `${args.join(' ')}: the escape is shown, escaped`);
    if (args.includes('json')) JSON.parse(out); // still valid JSON
    if (args.includes('csv')) assert.match(out, /"'=HYPERLINK/, 'the formula cell is quoted as text');
  }
});

test('a 20 MB stderr line is cut, not kept: the trial completes and the line is bounded', async () => {
  const study = await createStudy();
  const lines: string[] = [];
  const flood = `const b = 'y'.repeat(1 << 20); let n = 0; const w = () => { if (n++ < 20) process.stderr.write(b, w); else { process.stderr.write('\\nafter the flood\\n'); console.log('0.5'); } }; w();`;
  const objective = commandObjective({ command: [process.execPath, '-e', flood], onStderr: (line) => lines.push(line) });
  await study.optimize(objective, { nTrials: 1, catch: [CommandObjectiveError] });
  await objective.close();
  assert.equal(study.trials[0]!.state, 'COMPLETE', String(study.trials[0]!.systemAttrs['failReason']));
  assert.ok(lines.length >= 2, 'the cut line and the next one');
  for (const l of lines) assert.ok(l.length < 9000, `a stderr line of ${l.length} characters reached the log`);
  assert.match(lines[0]!, /line cut at 8192 bytes/);
  assert.ok(lines.includes('after the flood'), 'lines after the flood still arrive whole');
});
