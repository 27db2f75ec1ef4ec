/**
 * Moving checkpoint blobs between peers: a libp2p stream protocol of its own, one blob per stream.
 * The asker sends `{ h: hash, o: offset }`; the holder answers `{ ok: true, size }` (or `{ ok: false,
 * e: reason }`) and then the bytes from `offset` in length-prefixed frames of at most 1 MiB. The asker
 * writes them through the blob store's writer, which checks size and sha256 against the signed reference
 * before the blob gets its name, so a lying holder costs a retry, never a wrong file. An interrupted
 * download keeps its partial file and resumes from its length.
 *
 * The holder serves only what `mayServe` allows (blobs that a valid record references), so the protocol
 * is not a way to probe a peer's disk. Plain streams were chosen over helia/bitswap: bitswap for libp2p
 * 2.x pulls hundreds of packages (one with a binary-downloading install script), while a stream with
 * sha256 moves about 150 MiB/s on this machine's loopback (bench/checkpoints.bench.ts).
 */
import type { PeerId, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { frame, pack, readFrames, unpackUntrusted, asObject, WireError } from '../net/wire.js';
import { BlobError, isBlobHash, type BlobStore } from './blob-store.js';

export const BLOB_PROTOCOL = '/peertune/blob/1.0.0';
const DATA_FRAME = 1 << 20;
const HEADER_LIMIT = 512;

/** The part of a libp2p node the protocol needs (a real Libp2p instance satisfies it). */
export interface BlobHost {
  handle(protocol: string, handler: (data: { stream: Stream; connection: { remotePeer: PeerId } }) => void | Promise<void>, opts?: { maxInboundStreams?: number }): Promise<void>;
  unhandle(protocol: string): Promise<void>;
  dialProtocol(peer: PeerId, protocol: string, opts?: { signal?: AbortSignal }): Promise<Stream>;
}

export interface ServeOptions {
  /** Whether `remotePeer` may have blob `hash` (it must be referenced by a valid record). */
  mayServe(hash: string, remotePeer: string): boolean | Promise<boolean>;
  /** Counts a refused or broken request, charged to the peer that sent it. */
  onReject?(remotePeer: string, reason: string): void;
  /** Concurrent inbound blob streams (default 8). */
  maxInboundStreams?: number;
}

async function* one(x: Uint8Array): AsyncGenerator<Uint8Array> {
  yield x;
}

/** Starts answering blob requests from `store`. */
export async function serveBlobs(host: BlobHost, store: BlobStore, opts: ServeOptions): Promise<void> {
  await host.handle(
    BLOB_PROTOCOL,
    ({ stream, connection }) => {
      const remote = connection.remotePeer.toString();
      void answer(stream, remote, store, opts).catch((e) => {
        opts.onReject?.(remote, e instanceof WireError || e instanceof BlobError ? e.reason : 'stream');
        stream.abort(e instanceof Error ? e : new Error(String(e)));
      });
    },
    { maxInboundStreams: opts.maxInboundStreams ?? 8 },
  );
}

async function answer(stream: Stream, remote: string, store: BlobStore, opts: ServeOptions): Promise<void> {
  const frames = readFrames(stream.source, HEADER_LIMIT);
  const first = await withTimeout(frames.next(), 10_000, 'no request within 10 s');
  if (first.done) throw new WireError('empty', 'blob stream closed before its request');
  const req = asObject(unpackUntrusted(first.value, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'blob request');
  const hash = req['h'];
  const offset = req['o'] ?? 0;
  const refuse = async (e: string): Promise<void> => {
    await stream.sink(one(frame(pack({ ok: false, e }))));
  };
  if (!isBlobHash(hash) || !Number.isSafeInteger(offset) || (offset as number) < 0) {
    opts.onReject?.(remote, 'blob-request-schema');
    return refuse('bad request');
  }
  if (!(await opts.mayServe(hash, remote))) {
    opts.onReject?.(remote, 'blob-not-referenced');
    return refuse('not referenced');
  }
  const size = await store.sizeOf(hash);
  if (size === null) return refuse('not held');
  if ((offset as number) > size) {
    opts.onReject?.(remote, 'blob-request-schema');
    return refuse('offset past the end');
  }
  const from = offset as number;
  async function* body(): AsyncGenerator<Uint8Array> {
    yield frame(pack({ ok: true, size }));
    if (from === size) return;
    for await (const c of store.openRead(hash as string, from, DATA_FRAME)) yield frame(c as Buffer);
  }
  await stream.sink(body());
}

export interface FetchOptions {
  /** Abort when no data arrives for this long (default 15 s). */
  idleMs?: number;
  signal?: AbortSignal;
}

/**
 * Fetches one blob from `peer` into `store`, resuming a partial download, and checks it against the
 * reference's hash and size. Resolves with the number of bytes received on this attempt.
 */
export async function fetchBlob(host: BlobHost, peer: string, blob: { hash: string; size: number }, store: BlobStore, opts: FetchOptions = {}): Promise<number> {
  if (await store.has(blob.hash)) return 0;
  const writer = await store.writer(blob);
  let received = 0;
  let stream: Stream | null = null;
  try {
    stream = await host.dialProtocol(peerIdFromString(peer), BLOB_PROTOCOL, { signal: opts.signal ?? AbortSignal.timeout(10_000) });
    void stream.sink(one(frame(pack({ h: blob.hash, o: writer.offset })))).catch(() => {});
    const frames = readFrames(stream.source, DATA_FRAME + 16);
    const idle = opts.idleMs ?? 15_000;
    const head = await withTimeout(frames.next(), idle, `no answer from ${peer} within ${idle} ms`);
    if (head.done) throw new BlobError('closed', `${peer} closed the blob stream without answering`);
    const h = asObject(unpackUntrusted(head.value, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'blob answer');
    if (h['ok'] !== true) throw new BlobError('refused', `${peer} refused blob ${blob.hash}: ${typeof h['e'] === 'string' ? h['e'].slice(0, 100) : 'no reason'}`);
    if (h['size'] !== blob.size) throw new BlobError('size-mismatch', `${peer} says blob ${blob.hash} has ${String(h['size'])} bytes; its reference says ${blob.size}`);
    let left = blob.size - writer.offset;
    while (left > 0) {
      const next = await withTimeout(frames.next(), idle, `blob ${blob.hash} from ${peer} stalled for ${idle} ms`);
      if (next.done) break;
      await writer.write(next.value);
      received += next.value.byteLength;
      left -= next.value.byteLength;
    }
    if (left > 0) throw new BlobError('interrupted', `blob ${blob.hash} from ${peer} stopped at ${blob.size - left} of ${blob.size} bytes`);
    await writer.commit();
    await stream.close().catch(() => {});
    return received;
  } catch (e) {
    // Bytes that arrived stay as a partial file unless the blob itself proved wrong.
    const bad = e instanceof BlobError && (e.reason === 'hash-mismatch' || e.reason === 'too-large');
    await writer.abort(!bad);
    stream?.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(new BlobError('timeout', what)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
