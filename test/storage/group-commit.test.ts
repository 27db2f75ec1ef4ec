/**
 * Group commit (writer.ts persist): finished trials whose writes are issued while another write of
 * the study is on its way share one queued write, and each finishTrial still resolves only once its
 * state is written (synced). A real child process with a level dir finishes 20 trials at once,
 * reports, and is killed with SIGKILL right after every finish resolved; the reopened replica holds all
 * 20 as told. (A killed process loses nothing the OS already has, so this checks that each write
 * reached level before its finish resolved; the sync flag itself is level's to honour.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { setVerbosity } from '../../src/index.js';

setVerbosity('error');
const CHILD = fileURLToPath(new URL('../fixtures/group-commit-peer.ts', import.meta.url));

test('trials finished together share a write, and every told one survives kill -9', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'peertune-group-commit-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const n = 20;
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.on('exit', (code) => reject(new Error(`the child exited (${code}) before reporting: ${out}`)));
  });
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await gone;
  const counters = JSON.parse(line) as Record<string, number>;
  // The first finish's write went out alone; the second queued the next write, which the other 18 joined.
  assert.equal(counters['persist:grouped'], n - 2, line);

  const storage = await openPeerStorage({ dataDir, listen: [] });
  t.after(() => storage.close());
  const info = (await storage.waitForStudy('grouped', 5_000))!;
  assert.ok(info, 'the study was durable');
  const trials = storage.getAllTrials(info.studyId);
  assert.equal(trials.length, n);
  assert.deepEqual(
    trials.map((x) => [x.state, x.values]),
    Array.from({ length: n }, (_, i) => ['COMPLETE', [i]]),
  );
});
