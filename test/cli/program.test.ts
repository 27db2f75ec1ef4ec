// The program can be imported and inspected without running it: each command module registers its
// own options, and importing does not parse argv or exit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildProgram } from '../../src/cli/program.js';

test('importing and building the program runs no command; every subcommand is registered once', () => {
  const program = buildProgram();
  const names = program.commands.map((c) => c.name());
  for (const n of ['create-study', 'worker', 'node', 'studies', 'trials', 'best-trial', 'best-trials', 'export', 'ask', 'tell', 'delete-study']) {
    assert.ok(names.includes(n), `missing ${n}`);
  }
  assert.equal(new Set(names).size, names.length, 'no command registered twice');
  // One --wait per command (it used to be declared twice on ask, tell and delete-study).
  for (const c of program.commands) {
    const waits = c.options.filter((o) => o.long === '--wait');
    assert.ok(waits.length <= 1, `${c.name()} has ${waits.length} --wait options`);
  }
  const del = program.commands.find((c) => c.name() === 'delete-study')!;
  assert.doesNotMatch(del.description(), /swarm/i);
  assert.match(del.description(), /other peers keep/);
});
