// `npm start`'s demo, shortened: three worker processes and the demo's own replica on loopback, then
// a summary that accounts for every peer's trials.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { ensureBuilt, replicationBuilt, repo, runNode } from '../fixtures/cli/helpers.js';

before(() => ensureBuilt());

test('the demo runs three peers and prints a summary', { skip: replicationBuilt() ? false : 'replicated storage is not built' }, async () => {
  const r = await runNode([join(repo, 'dist', 'demo', 'main.js')], { env: { PEERTUNE_DEMO_SECONDS: '8' }, timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  for (const peer of ['peer1', 'peer2', 'peer3']) assert.match(r.stderr, new RegExp(`\\[${peer}\\] .*Joined study "demo-iris"`));
  assert.match(r.stderr, /\[peer\d\] \[I [^\]]+\] Trial \d+ finished with value: [\d.e-]+ and parameters: \{.*\}\. Best is trial \d+ with value/);
  const total = Number(r.stdout.match(/^Study "demo-iris": (\d+) trials in [\d.]+ s[^(]*\(?[^)]*\)? on 3 peers \((\d+) complete, (\d+) pruned, (\d+) failed\)\.$/m)?.[1]);
  assert.ok(total > 0, r.stdout);
  const perPeer = [...r.stdout.matchAll(/^ {2}peer\d \S+:\s+(\d+) trials/gm)].map((m) => Number(m[1]));
  assert.equal(perPeer.length, 3);
  assert.equal(perPeer.reduce((a, b) => a + b, 0), total, 'trials per peer add up to the study');
  // Each worker's own count (its last log line) matches what the demo's replica saw for it.
  const ran = [...r.stderr.matchAll(/\[(peer\d)\] .*Worker finished: ran (\d+) trials/g)].map((m) => [m[1], Number(m[2])] as const);
  assert.equal(ran.length, 3);
  for (const [peer, n] of ran) assert.match(r.stdout, new RegExp(`^  ${peer} \\S+:\\s+${n} trials`, 'm'));
  assert.match(r.stdout, /^Best is trial \d+ \(run by peer\d\) with validation loss [\d.]+/m);
  assert.match(r.stdout, /worker --study-name iris --data-dir \.\/peer-b --join \/ip4\//);
});
