// The attacker's toolkit for the security tests (security-attacks, security-holes, fuzz-network); it
// has no tests of its own (security-attacks checks that it speaks the real protocols). A raw libp2p
// node of our own that publishes arbitrary gossip on a study's topic and opens the sync stream
// protocol directly, and helpers to open real PeerStorage replicas on 127.0.0.1 and to look at what
// they stored and counted.
import '../src/net/polyfill.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as A from '@automerge/automerge';
import { createLibp2p, type Libp2p } from 'libp2p';
import { tcp } from '@libp2p/tcp';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { identify } from '@libp2p/identify';
import { gossipsub, type GossipSub } from '@chainsafe/libp2p-gossipsub';
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { PrivateKey, Stream } from '@libp2p/interface';
import { swarmProtector } from '../src/security/swarm-key.js';
import { openPeerStorage, type PeerStorage, type PeerStorageOptions } from '../src/storage/replicated/index.js';
import { SYNC_PROTOCOL } from '../src/net/node.js';
import { frame, pack, unpackUntrusted } from '../src/net/wire.js';
import type { StudyDoc } from '../src/storage/replicated/schema.js';
import { createStudy, setLogSink, type Study } from '../src/index.js';

export const FUZZ_RUNS = Number(process.env['PEERTUNE_FUZZ_RUNS'] ?? 0) || 0;
export const studyTopic = (studyId: string): string => `peertune/study/${studyId}`;

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

export async function tempDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'peertune-attack-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Silences the library's log lines (rejections are logged as warnings) for the duration of a suite. */
export function muteLogs(): () => void {
  const prev = setLogSink(() => {});
  return () => void setLogSink(prev);
}

export async function openPeer(dataDir: string, opts: Partial<PeerStorageOptions> = {}): Promise<PeerStorage> {
  return openPeerStorage({ dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], heartbeatIntervalMs: 200, staleAfterMs: 60_000, intermediateFlushMs: 20, ...opts });
}

export function counters(s: PeerStorage): Record<string, number> {
  return s.stats().counters;
}

/** Sum of the counters whose name starts with one of the prefixes. */
export function countOf(s: PeerStorage, ...prefixes: string[]): number {
  return Object.entries(counters(s))
    .filter(([k]) => prefixes.some((p) => k.startsWith(p)))
    .reduce((a, [, v]) => a + v, 0);
}

/** Difference of two counter snapshots, only the names that changed. */
export function diffCounters(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

/** The replica's document as saved now (the storage writes through Automerge's backend handle). */
export function savedBytes(s: PeerStorage, studyId: string): Uint8Array {
  const r = (s as unknown as { replicas: Map<string, { doc: A.Doc<StudyDoc> }> }).replicas.get(studyId);
  if (!r) throw new Error(`no replica of ${studyId}`);
  return A.getBackend(r.doc).save();
}

/** A copy of the replica's Automerge document (the attacker is a swarm member: it has the same document). */
export function replicaDoc(s: PeerStorage, studyId: string): A.Doc<StudyDoc> {
  return A.load<StudyDoc>(savedBytes(s, studyId));
}

/** A study with a few finished trials, so there are signed records to replay and forge. */
export async function studyWithTrials(storage: PeerStorage, name: string, n = 3): Promise<Study> {
  const study = await createStudy({ studyName: name, storage });
  for (let i = 0; i < n; i++) {
    const t = await study.ask();
    const x = t.suggestFloat('x', -10, 10);
    // Flushing between steps leaves several signed versions of each record (RUNNING, then COMPLETE).
    await storage.flush();
    t.report(x, 0);
    await storage.flush();
    await study.tell(t, x * x);
  }
  await storage.flush();
  return study;
}

export interface RawSyncResult {
  /** Frames the victim sent back, decoded. */
  frames: Record<string, unknown>[];
  /** The victim ended the stream (closed or reset) before our timeout. */
  ended: boolean;
}

/** A libp2p node of the attacker's own: same transports, StrictSign gossipsub, no validation. */
export class Attacker {
  private constructor(
    readonly libp2p: Libp2p<{ pubsub: GossipSub; identify: unknown }>,
    readonly key: PrivateKey,
  ) {}

  static async start(opts: { swarmKey?: Uint8Array; signaturePolicy?: 'StrictSign' | 'StrictNoSign' } = {}): Promise<Attacker> {
    // Cast: @libp2p/crypto and libp2p may resolve different copies of @libp2p/interface's key types.
    const key = (await generateKeyPair('Ed25519')) as unknown as PrivateKey;
    const libp2p = await createLibp2p({
      privateKey: key,
      addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
      transports: [tcp()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      ...(opts.swarmKey ? { connectionProtector: swarmProtector(opts.swarmKey) } : {}),
      services: {
        identify: identify(),
        pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false, globalSignaturePolicy: opts.signaturePolicy ?? 'StrictSign', floodPublish: true, heartbeatInterval: 700 }),
      },
    });
    return new Attacker(libp2p as unknown as Libp2p<{ pubsub: GossipSub; identify: unknown }>, key);
  }

  get peerId(): string {
    return this.libp2p.peerId.toString();
  }

  async connect(addrs: string[]): Promise<void> {
    await this.libp2p.dial(multiaddr(addrs[0]!), { signal: AbortSignal.timeout(5000) });
  }

  /** Subscribes and waits until `target` is known to be subscribed to the topic, so publishes reach it. */
  async joinTopic(topic: string, target: string): Promise<void> {
    const ps = this.libp2p.services.pubsub;
    if (!ps.getTopics().includes(topic)) ps.subscribe(topic);
    await waitFor(() => ps.getSubscribers(topic).some((p) => p.toString() === target), `${target} subscribed to ${topic}`);
  }

  /**
   * Publishes as another, made-up identity (a Sybil): a fresh key signs the message, so it passes
   * StrictSign, but it is sent over the attacker's one connection. Returns the fake peer id.
   */
  async publishAs(topic: string, data: Uint8Array): Promise<string> {
    const key = (await generateKeyPair('Ed25519')) as unknown as PrivateKey;
    const author = peerIdFromPrivateKey(key as never);
    const ps = this.libp2p.services.pubsub as unknown as { publishConfig: unknown };
    const own = ps.publishConfig;
    // gossipsub signs with whatever publishConfig holds (type 0 = Signing).
    ps.publishConfig = { type: 0, author, key: publicKeyToProtobuf(key.publicKey as never), privateKey: key };
    try {
      await this.libp2p.services.pubsub.publish(topic, data);
    } finally {
      ps.publishConfig = own;
    }
    return author.toString();
  }

  /** Publishes; returns the peer ids it was sent to. */
  async publish(topic: string, data: Uint8Array): Promise<string[]> {
    const res = await this.libp2p.services.pubsub.publish(topic, data);
    return res.recipients.map((p) => p.toString());
  }

  /**
   * Opens the victim's sync protocol and writes `chunks` as they are (frame them with `frame()` for
   * well-formed frames), then reads what comes back until the victim ends the stream or `waitMs` passes.
   */
  async rawSync(target: string, chunks: Uint8Array[], waitMs = 1500, opts: { closeWrite?: boolean } = {}): Promise<RawSyncResult> {
    const stream: Stream = await this.libp2p.dialProtocol(peerIdFromString(target), SYNC_PROTOCOL, { signal: AbortSignal.timeout(5000) });
    const received: Uint8Array[] = [];
    let ended = false;
    let keepOpen: (() => void) | null = null;
    const writeDone = stream
      .sink(
        (async function* () {
          for (const c of chunks) yield c;
          // Hold our side open (as a real peer would) unless told to close it.
          if (!opts.closeWrite) await new Promise<void>((r) => (keepOpen = r));
        })(),
      )
      .catch(() => {});
    const readDone = (async () => {
      try {
        for await (const chunk of stream.source) received.push(chunk.subarray());
      } catch {
        /* reset by the victim */
      }
      ended = true;
    })();
    await Promise.race([readDone, sleep(waitMs)]);
    (keepOpen as (() => void) | null)?.();
    stream.abort(new Error('attacker done'));
    await Promise.race([writeDone, sleep(200)]);
    return { frames: decodeFrames(concat(received)), ended };
  }

  async stop(): Promise<void> {
    await this.libp2p.stop();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.byteLength, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

function decodeFrames(b: Uint8Array): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let o = 0;
  while (o + 4 <= b.byteLength) {
    const n = new DataView(b.buffer, b.byteOffset + o).getUint32(0);
    if (o + 4 + n > b.byteLength) break;
    out.push(unpackUntrusted(b.subarray(o + 4, o + 4 + n), { maxBytes: 1 << 30, maxDepth: 8, maxNodes: 1e7 }) as Record<string, unknown>);
    o += 4 + n;
  }
  return out;
}

/** The frames of a minimal, well-behaved sync client that pushes `changes` of a study. */
export function syncFrames(studyId: string, name: string, changes: Uint8Array[], opts: { heads?: string[]; bye?: boolean } = {}): Uint8Array[] {
  const m = A.encodeSyncMessage({ heads: (opts.heads ?? []) as A.Heads, need: [], have: [], changes } as unknown as Parameters<typeof A.encodeSyncMessage>[0]);
  const frames = [frame(pack({ t: 'cat', s: [[studyId, name]] })), frame(pack({ t: 'sync', s: studyId, m }))];
  // 'bye' makes the victim end the session once it has handled the frames before it.
  if (opts.bye !== false) frames.push(frame(pack({ t: 'bye' })));
  return frames;
}

/** A gossip payload as peers publish it on a study topic. */
export function gossipPayload(changes: Uint8Array[]): Uint8Array {
  return pack({ c: changes });
}
