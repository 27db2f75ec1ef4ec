// Issue 15 F5: a private swarm locked without the key. pnet takes any 24 bytes as the remote's nonce,
// and libp2p kept at most 10 inbound connections pending for up to 10 s each, so 10 idle sockets
// renewed once a second kept a key holder out. Now a connection whose first decrypted bytes are not a
// libp2p handshake within 2 s is closed and counted (`pnet:*`), and there are 64 pending slots held
// 5 s at most. Peers are processes on 127.0.0.1 (test/fixtures/victim-peer.ts).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateSwarmKey } from '../../src/security/swarm-key.js';
import { Attacker, PeerProcess, idleSockets, tempDir, waitFor } from '../fixtures/attacker.js';

describe('private swarm slots (issue 15 F5)', () => {
  let dir: Awaited<ReturnType<typeof tempDir>>;
  const stops: (() => unknown)[] = [];
  before(async () => {
    dir = await tempDir();
  });
  after(async () => {
    for (const s of stops) await s();
    PeerProcess.killAll();
    await dir.remove();
  });

  it('idle key-less connections cannot keep a key holder out; a wrong key is closed at once', async () => {
    const key = new TextDecoder().decode(generateSwarmKey());
    const v = await PeerProcess.start({ dataDir: join(dir.path, 'v'), create: true, studyName: 'private', swarmKey: key });
    // The red team's attack: 10 sockets that send a nonce and nothing more, the oldest replaced by a
    // new one every second (so a slot freed is taken again at once).
    const attack = idleSockets(v.addrs[0]!, 10, randomBytes(24), 1);
    stops.push(attack.stop);
    // The attack is in place once V has closed some of its sockets for sending no handshake.
    await waitFor(async () => ((await v.stats()).counters['pnet:no-handshake'] ?? 0) >= 2, 'V closes idle key-less sockets', 30_000);
    const t0 = Date.now();
    // The key holder: ready only once it has reached V and loaded the study from it.
    const k = await PeerProcess.start({ dataDir: join(dir.path, 'k'), studyName: 'private', join: [v.addrs[0]], swarmKey: key });
    const joinMs = Date.now() - t0;
    await k.send({ cmd: 'watch', peer: v.peerId });
    await v.send({ cmd: 'watch', peer: k.peerId });
    const ran = await k.send<{ done: number }>({ cmd: 'run', n: 5 });
    // Stored data: V holds the key holder's 5 trials.
    await waitFor(async () => (await v.send<{ byOwner: Record<string, Record<string, number>> }>({ cmd: 'trials' })).byOwner[k.peerId]?.['COMPLETE'] === 5, "V stores K's 5 trials");
    // A peer with another key: closed on its first bytes.
    const wrong = await Attacker.start({ swarmKey: generateSwarmKey() });
    stops.push(() => wrong.stop());
    await assert.rejects(wrong.connect(v.addrs));
    await waitFor(async () => ((await v.stats()).counters['pnet:bad-key'] ?? 0) >= 1, 'V counts the wrong key');
    // Sentinel for the gaps: 10 more heartbeats of V at K while the attack goes on.
    const adv0 = (await k.stats()).gaps[v.peerId]!.advances;
    await waitFor(async () => (await k.stats()).gaps[v.peerId]!.advances >= adv0 + 10, 'K keeps hearing V');
    const vs = await v.stats();
    const ks = await k.stats();
    console.log(`F5: key holder in after ${joinMs} ms under ${attack.opened()} idle sockets (${attack.open()} open now); V closed ${vs.counters['pnet:no-handshake'] ?? 0} for no handshake, ${vs.counters['pnet:bad-key'] ?? 0} for a wrong key; K's max gap for V ${ks.gaps[v.peerId]!.maxGapMs} ms; V rss ${vs.rssMB.toFixed(0)} MiB, lag ${vs.lagMaxMs.toFixed(0)} ms`);
    assert.equal(ran.done, 5);
    assert.ok(joinMs < 20_000, `the key holder got in within 20 s (${joinMs} ms)`);
    assert.ok(ks.gaps[v.peerId]!.maxGapMs < 2000, `K heard V at least every 2 s (max gap ${ks.gaps[v.peerId]!.maxGapMs} ms)`);
    assert.ok(vs.rssMB < 400, `V's memory stayed bounded (${vs.rssMB.toFixed(0)} MiB)`);
    attack.stop();
    await k.quit();
    await v.quit();
  });
});
