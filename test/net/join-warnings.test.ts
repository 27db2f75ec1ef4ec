/**
 * "Cannot reach <join address> yet" (net/node.ts dialDue). Many peers started on one machine at once
 * all dial the peer they join within a second, and libp2p lets one host open 5 connections a second:
 * the rest are reset and get through on a later attempt. Each of those used to warn (the 16-process
 * bench logged 36 of them). A join address now warns once its dials have failed for 5 s; a refused
 * dial (no one listens there) still warns at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { setLogSink, setVerbosity } from '../../src/index.js';
import { openPeerStorage, type PeerStorage } from '../../src/storage/replicated/index.js';
import { inProcessPeers } from '../fixtures/in-process-peers.js';
import { waitFor } from '../fixtures/wait.js';

const peer = inProcessPeers('peertune-join-warn-', { heartbeatIntervalMs: 500, staleAfterMs: 60_000 });

test('12 peers joining one at the same moment: all connect, none warns "Cannot reach"; a dead join address warns at once', async () => {
  const lines: string[] = [];
  const sink = setLogSink((l) => lines.push(l));
  setVerbosity('warning');
  try {
    const first = await peer();
    const joiners: PeerStorage[] = await Promise.all(Array.from({ length: 12 }, () => peer([first.multiaddrs()[0]!])));
    await waitFor('all 12 connected to the peer they joined', 30_000, () => joiners.every((p) => p.stats().connectedPeers.includes(first.peerId)));
    assert.deepEqual(lines.filter((l) => /Cannot reach/.test(l)), [], 'no warning for dials that a later attempt got through');

    // A port nobody listens on: warned about, once, naming the address.
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as net.AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const dead = `/ip4/127.0.0.1/tcp/${port}/p2p/${first.peerId}`;
    peer.adopt(await openPeerStorage({ dataDir: await peer.dir(), join: [dead], heartbeatIntervalMs: 500 }));
    const warned = await waitFor('the warning for the dead address', 20_000, () => lines.find((l) => l.includes(`Cannot reach ${dead}`)));
    assert.match(warned, /ECONNREFUSED[^)]*, 1 attempt\(s\)\); retrying in the background/, 'a refused dial is warned about at once');
  } finally {
    setLogSink(sink);
    setVerbosity('error');
  }
});
