/**
 * The public entry point stays light: `import { createStudy } from 'peertune'` must not load libp2p,
 * Automerge or level (hundreds of milliseconds), which only `peertune/peer` and the first
 * `openPeerStorage()` call bring in; libp2p and its transports only once a replica starts its network.
 * Checked in a child process that records every module it resolves.
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

test("'peertune/peer' loads Automerge and level; libp2p comes with the first replica that has a network", () => {
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--import',
      recorder,
      '--input-type=module',
      '-e',
      `
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { openPeerStorage } = await import('./src/peer.ts');
    const dirs = [1, 2].map(() => fs.mkdtempSync(path.join(os.tmpdir(), 'peertune-loads-')));
    const atImport = await globalThis.loadedModules();
    // A replica without a network (every offline CLI read opens one so) never loads libp2p.
    const off = await openPeerStorage({ dataDir: dirs[0], listen: [] });
    await off.createStudy({ studyName: 'offline', directions: ['minimize'] });
    const offline = await globalThis.loadedModules();
    await off.close();
    const on = await openPeerStorage({ dataDir: dirs[1], listen: ['/ip4/127.0.0.1/tcp/0'] });
    const online = await globalThis.loadedModules();
    await on.close();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
    // Only the packages (the full list is long), written before exiting (a pipe is asynchronous).
    const pkgs = (urls) => [...new Set(urls.filter((u) => u.includes('/node_modules/')).map((u) => u.split('/node_modules/').pop()))];
    process.stdout.write(JSON.stringify({ atImport: pkgs(atImport), offline: pkgs(offline), online: pkgs(online) }) + String.fromCharCode(10), () => process.exit(0));
  `,
    ],
    { cwd: root, encoding: 'utf8' },
  );
  assert.equal(run.status, 0, run.stderr);
  const r = JSON.parse(run.stdout.trim().split('\n').at(-1)!) as Record<'atImport' | 'offline' | 'online', string[]>;
  const has = (paths: string[], pkg: string) => paths.some((u) => u.startsWith(`${pkg}/`));
  for (const pkg of ['@automerge', 'level']) assert.ok(has(r.atImport, pkg), `${pkg} is loaded with peertune/peer`);
  const NETWORK = ['libp2p', '@chainsafe/libp2p-gossipsub', '@chainsafe/libp2p-noise', '@chainsafe/libp2p-yamux', '@libp2p/tcp'];
  assert.deepEqual(NETWORK.filter((pkg) => has(r.offline, pkg)), [], 'a replica without a network loads none of the network packages');
  assert.deepEqual(NETWORK.filter((pkg) => !has(r.online, pkg)), [], 'a replica with a network loads all of them');
});
