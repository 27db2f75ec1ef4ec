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
import { frame, pack, pushable, readFrames, unpackUntrusted, asObject, WireError } from '../net/wire.js';
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

/**
 * Bytes asked for per request. yamux acknowledges data as it arrives rather than as it is read, so
 * its flow control does not stop a fast sender from filling a slow receiver's memory (measured: +570 MiB
 * for a 400 MiB blob). The asker therefore grants credit itself: at most two windows outstanding.
 */
const WINDOW = 4 << 20;

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

interface BlobRequest {
  hash: string;
  offset: number;
  length: number;
}

function parseRequest(bytes: Uint8Array): BlobRequest | null {
  const req = asObject(unpackUntrusted(bytes, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'blob request');
  const hash = req['h'];
  const offset = req['o'];
  const length = req['n'];
  if (!isBlobHash(hash) || !Number.isSafeInteger(offset) || (offset as number) < 0) return null;
  if (!Number.isSafeInteger(length) || (length as number) < 1 || (length as number) > 4 * WINDOW) return null;
  return { hash, offset: offset as number, length: length as number };
}

async function answer(stream: Stream, remote: string, store: BlobStore, opts: ServeOptions): Promise<void> {
  const frames = readFrames(stream.source, HEADER_LIMIT);
  const first = await withTimeout(frames.next(), 10_000, 'no request within 10 s');
  if (first.done) throw new WireError('empty', 'blob stream closed before its request');
  const req = parseRequest(first.value);
  const refuse = async (e: string): Promise<void> => {
    await stream.sink(one(frame(pack({ ok: false, e }))));
  };
  if (!req) {
    opts.onReject?.(remote, 'blob-request-schema');
    return refuse('bad request');
  }
  if (!(await opts.mayServe(req.hash, remote))) {
    opts.onReject?.(remote, 'blob-not-referenced');
    return refuse('not referenced');
  }
  const size = await store.sizeOf(req.hash);
  if (size === null) return refuse('not held');
  if (req.offset > size) {
    opts.onReject?.(remote, 'blob-request-schema');
    return refuse('offset past the end');
  }
  const hash = req.hash;
  async function* body(): AsyncGenerator<Uint8Array> {
    yield frame(pack({ ok: true, size }));
    let cur: BlobRequest = req!;
    for (;;) {
      const end = Math.min(size!, cur.offset + cur.length);
      if (end > cur.offset) {
        for await (const c of store.openRead(hash, cur.offset, DATA_FRAME, end - 1)) yield frame(c as Buffer);
      }
      if (end >= size!) return;
      // The asker's next window (or the end of the stream when it has what it needs).
      const next = await withTimeout(frames.next(), 30_000, 'no next window request within 30 s');
      if (next.done) return;
      const r = parseRequest(next.value);
      if (!r || r.hash !== hash || r.offset !== end) throw new WireError('schema', 'blob window request out of order');
      cur = r;
    }
  }
  await stream.sink(body());
}

export interface FetchOptions {
  /** Abort when no data arrives for this long (default 15 s). */
  idleMs?: number;
  /** Aborts the fetch at any point (dialling, or mid-blob: the stream is cut). */
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
  const out = pushable();
  const cut = (): void => stream?.abort(new BlobError('aborted', `the fetch of blob ${blob.hash} from ${peer} was aborted`));
  opts.signal?.addEventListener('abort', cut, { once: true });
  try {
    const dialTimeout = AbortSignal.timeout(10_000);
    stream = await host.dialProtocol(peerIdFromString(peer), BLOB_PROTOCOL, { signal: opts.signal ? AbortSignal.any([opts.signal, dialTimeout]) : dialTimeout });
    if (opts.signal?.aborted) throw new BlobError('aborted', `the fetch of blob ${blob.hash} from ${peer} was aborted`);
    const sinkDone = stream.sink(out.source).catch(() => {});
    let pos = writer.offset;
    // Two windows in flight keep the link busy while one is being written.
    let requested = pos;
    const ask = (): void => {
      if (requested >= blob.size && requested !== pos) return;
      out.push(frame(pack({ h: blob.hash, o: requested, n: WINDOW })));
      requested = Math.min(blob.size, requested + WINDOW);
    };
    ask();
    const frames = readFrames(stream.source, DATA_FRAME + 16);
    const idle = opts.idleMs ?? 15_000;
    const head = await withTimeout(frames.next(), idle, `no answer from ${peer} within ${idle} ms`);
    if (head.done) throw new BlobError('closed', `${peer} closed the blob stream without answering`);
    const h = asObject(unpackUntrusted(head.value, { maxBytes: HEADER_LIMIT, maxNodes: 8 }), 'blob answer');
    if (h['ok'] !== true) throw new BlobError('refused', `${peer} refused blob ${blob.hash}: ${typeof h['e'] === 'string' ? h['e'].slice(0, 100) : 'no reason'}`);
    if (h['size'] !== blob.size) throw new BlobError('size-mismatch', `${peer} says blob ${blob.hash} has ${String(h['size'])} bytes; its reference says ${blob.size}`);
    if (requested < blob.size) ask();
    while (pos < blob.size) {
      const next = await withTimeout(frames.next(), idle, `blob ${blob.hash} from ${peer} stalled for ${idle} ms`);
      if (next.done) break;
      await writer.write(next.value);
      received += next.value.byteLength;
      pos += next.value.byteLength;
      // Grant the next window once the older of the two outstanding ones is fully written.
      if (requested < blob.size && requested - pos < WINDOW) ask();
    }
    out.end();
    if (pos < blob.size) throw new BlobError('interrupted', `blob ${blob.hash} from ${peer} stopped at ${pos} of ${blob.size} bytes`);
    await writer.commit();
    await Promise.race([sinkDone, new Promise((r) => setTimeout(r, 1000).unref())]);
    await stream.close().catch(() => {});
    return received;
  } catch (e) {
    out.end();
    // Bytes that arrived stay as a partial file unless the blob itself proved wrong.
    const bad = e instanceof BlobError && (e.reason === 'hash-mismatch' || e.reason === 'too-large');
    await writer.abort(!bad);
    stream?.abort(e instanceof Error ? e : new Error(String(e)));
    throw e;
  } finally {
    opts.signal?.removeEventListener('abort', cut);
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
