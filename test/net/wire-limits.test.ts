// net/wire.ts unpackUntrusted: the total-values limit (maxNodes) holds for every message, and the
// extra walk that counts values runs only for messages longer than the limit (each value takes at
// least one byte of msgpack, so a shorter one cannot pass it; issue 8, record decoding on load).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pack, unpackUntrusted, WireError } from '../../src/net/wire.js';

test('more values than maxNodes is refused by name, at every nesting; as many as the bytes allow passes', () => {
  const limits = { maxBytes: 1 << 20, maxDepth: 8, maxNodes: 100 };
  // 40 small arrays of 3: 161 values in 161 bytes.
  const nested = pack(Array.from({ length: 40 }, (_, i) => [i, i, i]));
  assert.ok(nested.byteLength > limits.maxNodes);
  assert.throws(() => unpackUntrusted(nested, limits), (e: unknown) => e instanceof WireError && e.reason === 'too-many-values' && /more than 100 values/.test(e.message));
  // 99 values in one array: within the limit however it is counted.
  const flat = pack(Array.from({ length: 98 }, (_, i) => i % 100));
  assert.ok(flat.byteLength <= 3 + 98);
  assert.equal((unpackUntrusted(flat, limits) as number[]).length, 98);
  // The shortest possible encoding of N values is N bytes: any message within maxNodes bytes has at most maxNodes values.
  const tight = pack(Array.from({ length: 14 }, () => 0));
  assert.equal(tight.byteLength, 15, 'fixarray header + 14 one-byte values');
  assert.deepEqual(unpackUntrusted(tight, { ...limits, maxNodes: 15 }), Array(14).fill(0));
});
