// src/net/yamux-window.ts: a yamux receiver announces window only once half of it is used, not after
// every frame (issue 8, receiving cost), and a stream that writes past its window still flows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { duplexPair } from 'it-pair/duplex';
import { pipe } from 'it-pipe';
import { defaultLogger } from '@libp2p/logger';
import { yamux } from '@chainsafe/libp2p-yamux';
import type { Stream } from '@libp2p/interface';
import { yamuxWindowUpdates } from '../../src/net/yamux-window.js';

/** Two yamux muxers joined by an in-memory pipe; `received` resolves with what the server's first incoming stream carried. */
function muxerPair(): { client: { newStream(): Stream | Promise<Stream> }; received: Promise<Uint8Array[]>; close(): Promise<void> } {
  let got!: (chunks: Uint8Array[]) => void;
  const received = new Promise<Uint8Array[]>((r) => (got = r));
  const factory = yamux()({ logger: defaultLogger() } as never);
  const client = factory.createStreamMuxer({ direction: 'outbound' });
  const server = factory.createStreamMuxer({
    direction: 'inbound',
    onIncomingStream: (s: Stream) => {
      void (async () => {
        const chunks: Uint8Array[] = [];
        for await (const c of s.source) chunks.push(c.subarray());
        got(chunks);
      })();
    },
  });
  const [a, b] = duplexPair<Uint8Array>();
  void pipe(a, client as never, a);
  void pipe(b, server as never, b);
  return { client, received, close: async () => void (await Promise.all([client.close(), server.close()])) };
}

const concat = (chunks: Uint8Array[]): Buffer => Buffer.concat(chunks.map((c) => Buffer.from(c)));

/** Sends `chunks` one frame each (a pause between them, as gossip messages come), then closes the stream. */
async function send(stream: Stream, chunks: Uint8Array[]): Promise<void> {
  await stream.sink(
    (async function* () {
      for (const c of chunks) {
        yield c;
        await new Promise((r) => setImmediate(r));
      }
    })(),
  );
}

test('300 small messages: every byte arrives in order, with a handful of window updates instead of one per frame', async (t) => {
  const { client, received, close } = muxerPair();
  t.after(close);
  const before = { ...yamuxWindowUpdates };
  const msgs = Array.from({ length: 300 }, (_, i) => Buffer.from(`message ${i} `.padEnd(100, '.')));
  await send(await client.newStream(), msgs);
  const got = await received;
  assert.deepEqual(concat(got), concat(msgs));
  assert.ok(got.length >= 100, `the messages came as ${got.length} frames: the test needs one frame per message or close`);
  const sent = yamuxWindowUpdates.sent - before.sent;
  const skipped = yamuxWindowUpdates.skipped - before.skipped;
  // 30 KB never uses half of a 256 KiB window: the only updates are the ones that carry flags (the stream's ACK, FINs).
  assert.ok(sent <= 4, `${sent} window updates for 300 frames`);
  assert.ok(skipped >= got.length - 4, `${skipped} updates skipped for ${got.length} frames read`);
});

test('4 MiB through one stream, 16 times its first window: it arrives whole, with updates as the window is used', async (t) => {
  const { client, received, close } = muxerPair();
  t.after(close);
  const before = { ...yamuxWindowUpdates };
  const chunks = Array.from({ length: 256 }, (_, i) => Buffer.alloc(16 * 1024, i));
  await send(await client.newStream(), chunks);
  const got = concat(await received);
  assert.equal(got.byteLength, 4 * 1024 * 1024);
  assert.ok(got.equals(concat(chunks)));
  const sent = yamuxWindowUpdates.sent - before.sent;
  // Past its first 256 KiB the sender can write only what updates announced (the window also grows
  // while the reader keeps up), so the whole 4 MiB arriving shows the updates went out.
  assert.ok(sent >= 2, `only ${sent} window updates for 16 windows of data`);
  assert.ok(sent <= 256 / 8, `${sent} window updates for 256 frames: one per frame or close`);
});
