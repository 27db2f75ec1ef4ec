/**
 * A replica without a network (`listen: []`, no join: what every offline CLI read opens) never loads
 * libp2p or its transports (src/net/addresses.ts); one with a network does. A real child process
 * whose module resolutions are recorded by a resolve hook.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = fileURLToPath(new URL('../fixtures/offline-imports.ts', import.meta.url));

test('a replica without a network does not import libp2p; one with a network does', async (t) => {
  const dirs = await Promise.all([1, 2].map(() => mkdtemp(path.join(os.tmpdir(), 'peertune-offline-imports-'))));
  t.after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(process.execPath, ['--import', 'tsx', CHILD, ...dirs], { stdio: ['ignore', 'pipe', 'inherit'] });
    let s = '';
    p.stdout.on('data', (b: Buffer) => (s += b.toString()));
    p.on('exit', (code) => (code === 0 ? resolve(s.trim().split('\n').pop()!) : reject(new Error(`child exited ${code}: ${s}`))));
  });
  const r = JSON.parse(out) as { resolved: number; afterOffline: string[]; afterOnline: number };
  assert.ok(r.resolved > 50, `the hook saw the storage's modules resolve: ${out}`);
  assert.deepEqual(r.afterOffline, [], 'no libp2p package loaded for the offline replica');
  assert.ok(r.afterOnline >= 5, `the networked replica loaded libp2p, gossipsub, noise, yamux and tcp: ${out}`);
});
