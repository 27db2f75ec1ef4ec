/**
 * The public entry point stays light: `import { createStudy } from 'peertune'` must not load libp2p,
 * Automerge or level (hundreds of milliseconds), which only `peertune/peer` and the first
 * `openPeerStorage()` call bring in. Checked in a child process that records every module it resolves.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

const root = path.join(import.meta.dirname, '..');
const recorder = path.join(import.meta.dirname, 'fixtures', 'record-loads.mjs');
const HEAVY = /node_modules\/(libp2p|@libp2p|@chainsafe|@automerge|level|classic-level|abstract-level|msgpackr)\//;

function loadsOf(script: string): string[] {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--import', recorder, '--input-type=module', '-e', script], { cwd: root, encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return JSON.parse(run.stdout.trim().split('\n').at(-1)!) as string[];
}

test("importing 'peertune' loads no network, replica or database package", () => {
  const urls = loadsOf(`
    const m = await import('./src/index.ts');
    const s = await m.createStudy();
    await s.optimize((t) => t.suggestFloat('x', 0, 1), { nTrials: 3 });
    if (typeof m.openPeerStorage !== 'function') throw new Error('openPeerStorage missing');
    console.log(JSON.stringify(await globalThis.loadedModules()));
  `);
  assert.ok(urls.some((u) => u.endsWith('/src/study.ts')), 'the recorder saw the entry load');
  assert.deepEqual(urls.filter((u) => HEAVY.test(u)), []);
  assert.deepEqual(urls.filter((u) => u.includes('node_modules/cli-progress/')), [], 'the progress bar loads only when shown');
});

test("'peertune/peer' (and the first openPeerStorage call) load them", () => {
  const urls = loadsOf(`
    await import('./src/peer.ts');
    console.log(JSON.stringify(await globalThis.loadedModules()));
  `);
  for (const pkg of ['libp2p', '@automerge', 'level']) assert.ok(urls.some((u) => u.includes(`node_modules/${pkg}/`)), `${pkg} is loaded`);
});
