// Private swarms at the libp2p level: swarm key files and the pnet protector, the peer allowlist gater.
// Real libp2p nodes on 127.0.0.1; the replicated storage's own end-to-end tests are in security-e2e.
if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  (Promise as unknown as { withResolvers: () => unknown }).withResolvers = function withResolvers<T>() {
    let resolve!: (v: T) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
    return { promise, resolve, reject };
  };
}
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile, chmod, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { ConnectionGater } from '@libp2p/interface';
import {
  generateSwarmKey,
  parseSwarmKey,
  writeSwarmKeyFile,
  readSwarmKeyFile,
  swarmProtector,
  SwarmKeyError,
  allowlistGater,
  AllowlistError,
  ensurePrivateDir,
} from '../../src/security/index.js';
import { setLogSink } from '../../src/logging.js';

async function tmp(t: { after: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'peertune-sec-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function node(opts: { key?: Uint8Array; gater?: ConnectionGater } = {}): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(opts.key ? { connectionProtector: swarmProtector(opts.key) } : {}),
    ...(opts.gater ? { connectionGater: opts.gater } : {}),
  });
}

async function canConnect(from: Libp2p, to: Libp2p): Promise<boolean> {
  try {
    const conn = await from.dial(to.getMultiaddrs()[0]!, { signal: AbortSignal.timeout(3000) });
    // A connection the remote refuses after the handshake is closed right away: wait until the remote
    // holds it open (accepted) or our side sees it closed (refused), whichever comes first.
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline) {
      if (conn.status !== 'open') return false;
      if (to.getConnections(from.peerId).some((c) => c.status === 'open')) return true;
      await new Promise((r) => setTimeout(r, 10));
    }
    return false;
  } catch {
    return false;
  }
}

test('generated swarm keys are in pnet format, distinct, and round-trip through parseSwarmKey', () => {
  const a = generateSwarmKey();
  const b = generateSwarmKey();
  assert.equal(a.length, 95);
  assert.match(new TextDecoder().decode(a), /^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/);
  assert.notDeepEqual(a, b);
  assert.deepEqual(parseSwarmKey(a), a);
  // Keys written by other tools: CRLF, trailing newline, upper-case hex.
  const other = new TextDecoder().decode(a).replace(/\n/g, '\r\n').replace(/[0-9a-f]{64}$/, (h) => h.toUpperCase()) + '\r\n';
  assert.deepEqual(parseSwarmKey(other), a);
});

test('malformed swarm keys are refused with a message naming the problem', () => {
  const good = new TextDecoder().decode(generateSwarmKey());
  const cases: [string, RegExp][] = [
    ['', /not a swarm key/],
    ['hello', /not a swarm key/],
    [good.replace('/key/swarm/psk/1.0.0/', '/key/swarm/psk/2.0.0/'), /first line must be/],
    [good.replace('/base16/', '/base64/'), /only the \/base16\/ encoding/],
    [good.slice(0, -2), /exactly 64 hex digits.*found 62/],
    [good.slice(0, -1) + 'z', /non-hex/],
  ];
  for (const [key, re] of cases) {
    assert.throws(() => parseSwarmKey(key, 'my.key'), (e: Error) => e instanceof SwarmKeyError && /my\.key/.test(e.message) && re.test(e.message), key);
  }
  assert.throws(() => swarmProtector(new Uint8Array(95)), /swarmKey: /);
});

test('swarm key files: written 0600, never overwritten silently, read back; missing, loose and bad files reported', async (t) => {
  const dir = await tmp(t);
  const path = join(dir, 'sub', 'swarm.key');
  const key = generateSwarmKey();
  await writeSwarmKeyFile(path, key);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'sub'))).mode & 0o777, 0o700);
  assert.deepEqual(await readSwarmKeyFile(path), key);

  await assert.rejects(writeSwarmKeyFile(path, generateSwarmKey()), /already exists; refusing to overwrite/);
  assert.deepEqual(new Uint8Array(await readFile(path)), key, 'the refused write left the old key');
  const replacement = generateSwarmKey();
  await writeSwarmKeyFile(path, replacement, { overwrite: true });
  assert.deepEqual(await readSwarmKeyFile(path), replacement);

  await assert.rejects(readSwarmKeyFile(join(dir, 'nope.key')), /nope\.key does not exist/);
  await writeFile(join(dir, 'bad.key'), 'not a key');
  await assert.rejects(readSwarmKeyFile(join(dir, 'bad.key')), /bad\.key: not a swarm key/);
  await mkdir(join(dir, 'adir'));
  await assert.rejects(readSwarmKeyFile(join(dir, 'adir')), /not a regular file/);

  const lines: string[] = [];
  const prev = setLogSink((l) => lines.push(l));
  try {
    await chmod(path, 0o644);
    assert.deepEqual(await readSwarmKeyFile(path), replacement, 'a readable-by-others key still works');
  } finally {
    setLogSink(prev);
  }
  assert.ok(lines.some((l) => /mode 0644.*chmod 600/.test(l)), lines.join('\n'));
  assert.ok(!lines.some((l) => l.includes(new TextDecoder().decode(replacement).slice(-64))), 'the key itself is never logged');
});

test('data directories are created 0700 and loose ones are tightened', async (t) => {
  const dir = await tmp(t);
  const data = join(dir, 'a', 'b');
  await ensurePrivateDir(data);
  assert.equal((await stat(data)).mode & 0o777, 0o700);
  await chmod(data, 0o755);
  await ensurePrivateDir(data);
  assert.equal((await stat(data)).mode & 0o777, 0o700);
  await writeFile(join(dir, 'file'), 'x');
  await assert.rejects(ensurePrivateDir(join(dir, 'file')), /exists and is not a directory/);
  await assert.rejects(ensurePrivateDir(join(dir, 'file', 'x')), /not a directory/);
});

test('pnet: a peer with the swarm key connects, one with another key or none cannot', async (t) => {
  const key = generateSwarmKey();
  const a = await node({ key });
  const b = await node({ key });
  const stranger = await node({ key: generateSwarmKey() });
  const open = await node();
  t.after(() => Promise.all([a, b, stranger, open].map((n) => n.stop())));

  assert.equal(await canConnect(b, a), true, 'same key');
  assert.equal(await canConnect(stranger, a), false, 'other key');
  assert.equal(await canConnect(open, a), false, 'no key, dialling a private peer');
  assert.equal(await canConnect(a, open), false, 'private peer dialling an open one');
  assert.equal(a.getConnections().filter((c) => c.status === 'open').length, 1, 'only b is connected to a');
  assert.equal(a.getConnections()[0]!.remotePeer.toString(), b.peerId.toString());
});

test('allowlist: malformed peer ids are refused up front', () => {
  assert.throws(() => allowlistGater(['12D3KooWnotapeerid']), (e: Error) => e instanceof AllowlistError && /allowPeers\[0\]: "12D3KooWnotapeerid" is not a valid libp2p peer id/.test(e.message));
  assert.throws(() => allowlistGater(['' ]), /allowPeers\[0\]/);
  assert.throws(() => allowlistGater([42 as unknown as string]), /allowPeers\[0\] must be a peer id string, got number/);
  assert.throws(() => allowlistGater('12D3' as unknown as string[]), /must be an array/);
});

test('allowlist: a listed peer connects both ways, an unlisted one is refused at the authenticated hook', async (t) => {
  const friend = await node();
  const stranger = await node();
  const denied: string[] = [];
  // The gater needs the friend's id before the guarded node exists.
  const guarded = await node({ gater: allowlistGater([friend.peerId.toString()], { onDeny: (id, hook) => denied.push(`${hook}:${id}`) }) });
  t.after(() => Promise.all([friend, stranger, guarded].map((n) => n.stop())));

  assert.equal(await canConnect(friend, guarded), true, 'listed peer dials in');
  assert.equal(await canConnect(stranger, guarded), false, 'unlisted peer dials in');
  assert.ok(denied.includes(`inbound:${stranger.peerId.toString()}`), denied.join(','));
  assert.equal(await canConnect(guarded, stranger), false, 'guarded node does not dial an unlisted peer');
  assert.ok(denied.some((d) => d.endsWith(stranger.peerId.toString()) && (d.startsWith('dial:') || d.startsWith('outbound:'))), denied.join(','));
  await friend.hangUp(guarded.peerId);
  assert.equal(await canConnect(guarded, friend), true, 'guarded node dials a listed peer');
  assert.ok(!denied.some((d) => d.endsWith(friend.peerId.toString())));
});
