// Private swarms and allowlists with the real replicated storage on 127.0.0.1 (issue 5, item 1):
// a peer without the study's swarm key (or with another key) cannot even connect and never gets the
// study, a peer with it can; with an allowlist, a listed peer replicates and an unlisted one is
// refused and counted. Also the errors for malformed swarm keys and allowlists.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile, mkdir } from 'node:fs/promises';
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { loadStudy } from '../../src/index.js';
import { generateSwarmKey, readSwarmKeyFile, writeSwarmKeyFile } from '../../src/security/swarm-key.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { counters, muteLogs, openPeer, studyWithTrials, tempDir, waitFor } from '../fixtures/attacker.js';

async function presetIdentity(dir: string): Promise<string> {
  const key = await generateKeyPair('Ed25519');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(join(dir, 'peer.key'), privateKeyToProtobuf(key), { mode: 0o600 });
  return peerIdFromPrivateKey(key as never).toString();
}

test('private swarm: only peers holding the swarm key connect and replicate the study', async (t) => {
  const unmute = muteLogs();
  const dir = await tempDir();
  const open: PeerStorage[] = [];
  t.after(async () => {
    for (const s of open.reverse()) await s.close();
    await dir.remove();
    unmute();
  });
  // The key travels as a file (0600), as `peertune create-study --private` writes it.
  const keyFile = join(dir.path, 'keys', 'swarm.key');
  await writeSwarmKeyFile(keyFile, generateSwarmKey());
  const key = await readSwarmKeyFile(keyFile);
  const Y = await openPeer(join(dir.path, 'y'), { swarmKey: key });
  open.push(Y);
  const study = await studyWithTrials(Y, 'private', 2);

  const member = await openPeer(join(dir.path, 'member'), { swarmKey: await readSwarmKeyFile(keyFile), join: Y.multiaddrs() });
  open.push(member);
  const loaded = await loadStudy({ studyName: 'private', storage: member });
  await waitFor(() => loaded.trials.length === 2, 'the member to replicate both trials');

  const noKey = await openPeer(join(dir.path, 'nokey'), { join: Y.multiaddrs() });
  const otherKey = await openPeer(join(dir.path, 'otherkey'), { swarmKey: generateSwarmKey(), join: Y.multiaddrs() });
  open.push(noKey, otherKey);
  // Give them several dial attempts (the dialer retries with backoff).
  const noKeyStudy = await noKey.waitForStudy('private', 3000);
  const otherKeyStudy = await otherKey.waitForStudy('private', 100);
  assert.equal(noKeyStudy, null, 'a peer without the key never learns the study');
  assert.equal(otherKeyStudy, null, 'a peer with another key never learns the study');
  const yPeers = Y.stats().connectedPeers;
  assert.ok(yPeers.includes(member.peerId), 'the member is connected');
  assert.ok(!yPeers.includes(noKey.peerId) && !yPeers.includes(otherKey.peerId), `outsiders are not connected: ${yPeers.join(', ')}`);
  assert.deepEqual(noKey.stats().connectedPeers, []);
  assert.deepEqual(otherKey.stats().connectedPeers, []);
  assert.equal(Y.getAllTrials(study.studyId).length, 2, 'nothing changed on Y');
});

test('allowlist: a listed peer replicates, an unlisted one is refused at the handshake and counted', async (t) => {
  const unmute = muteLogs();
  const dir = await tempDir();
  const open: PeerStorage[] = [];
  t.after(async () => {
    for (const s of open.reverse()) await s.close();
    await dir.remove();
    unmute();
  });
  const friendId = await presetIdentity(join(dir.path, 'friend'));
  const Y = await openPeer(join(dir.path, 'y'), { allowPeers: [friendId] });
  open.push(Y);
  await studyWithTrials(Y, 'listed', 1);
  const friend = await openPeer(join(dir.path, 'friend'), { join: Y.multiaddrs() });
  open.push(friend);
  assert.equal(friend.peerId, friendId);
  const s = await loadStudy({ studyName: 'listed', storage: friend });
  await waitFor(() => s.trials.length === 1, 'the listed peer to replicate the trial');

  const stranger = await openPeer(join(dir.path, 'stranger'), { join: Y.multiaddrs() });
  open.push(stranger);
  assert.equal(await stranger.waitForStudy('listed', 2500), null, 'the unlisted peer never learns the study');
  const deniedOf = (): number => Object.entries(counters(Y)).filter(([k]) => k.startsWith('denied-not-allowed')).reduce((a, [, v]) => a + v, 0);
  await waitFor(() => deniedOf() >= 1, `Y to count its refusal of the unlisted peer (${JSON.stringify(counters(Y))})`);
  assert.ok(!Y.stats().connectedPeers.includes(stranger.peerId), 'the unlisted peer is not connected');
});

// Fixed in a0e6c9a: openPeerStorage checks swarmKey, allowPeers, listen and join up front (with
// parseSwarmKey/parsePeerIds from src/security) and the error names the option and what is valid.
test('HOLE-9 (fixed) malformed swarm keys, allowlists and listen addresses are named in the error', async (t) => {
  const unmute = muteLogs();
  const dir = await tempDir();
  t.after(async () => {
    await dir.remove();
    unmute();
  });
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ swarmKey: new TextEncoder().encode('garbage') }, /swarmKey/],
    [{ allowPeers: ['12D3KooWnope'] }, /allowPeers\[0\].*not a valid libp2p peer id/],
    [{ listen: ['/ip4/999.0.0.1/tcp/0'] }, /listen/],
  ];
  let i = 0;
  for (const [opts, re] of cases) {
    await assert.rejects(openPeer(join(dir.path, `bad${i++}`), opts), re);
  }
});
