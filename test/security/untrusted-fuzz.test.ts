// Property-based fuzzing of the hostile-input decoder. Runs are bounded for CI; set
// PEERTUNE_FUZZ_RUNS (e.g. 100000) for a long local run. The counts tried are printed per property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { pack, Packr } from 'msgpackr';
import { decodeUntrusted, scanMsgpack, RejectCounter, UntrustedInputError, type UntrustedLimits } from '../../src/security/untrusted.js';

const RUNS = Number(process.env['PEERTUNE_FUZZ_RUNS'] ?? 300);
const L: UntrustedLimits = { maxBytes: 64 * 1024, maxDepth: 12, maxKeys: 500 };
const tried: Record<string, number> = {};

function classify(bytes: Uint8Array, limits = L): unknown {
  try {
    return { ok: decodeUntrusted(bytes, limits) };
  } catch (e) {
    if (!(e instanceof UntrustedInputError)) throw new Error(`non-UntrustedInputError escaped: ${(e as Error)?.stack ?? e}`);
    return { reason: e.reason };
  }
}

function property<T>(name: string, arb: fc.Arbitrary<T>, check: (v: T) => void, runs = RUNS): void {
  let n = 0;
  fc.assert(
    fc.property(arb, (v) => {
      n++;
      check(v);
    }),
    { numRuns: runs },
  );
  tried[name] = (tried[name] ?? 0) + n;
}

const BAD = new Set(['__proto__', 'constructor', 'prototype']);
/** Deep check: only plain data, no dangerous own keys, no extension types. */
function assertPlain(v: unknown, depth = 0): void {
  assert.ok(depth <= L.maxDepth + 1);
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return;
  if (typeof v === 'number') return;
  if (v instanceof Uint8Array) return;
  if (Array.isArray(v)) {
    assert.ok(v.length <= L.maxKeys);
    for (const x of v) assertPlain(x, depth + 1);
    return;
  }
  assert.equal(typeof v, 'object', `unexpected ${typeof v}`);
  assert.equal(Object.getPrototypeOf(v), Object.prototype, 'only plain objects');
  for (const k of Reflect.ownKeys(v as object)) {
    assert.equal(typeof k, 'string');
    assert.ok(!BAD.has(k as string), `dangerous key ${String(k)}`);
    assertPlain((v as Record<string, unknown>)[k as string], depth + 1);
  }
}

// JSON-like data as a well-behaved peer would send it.
const plainValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.double({ noNaN: true }),
    fc.string(),
    fc.uint8Array({ maxLength: 32 }),
    fc.array(tie('value'), { maxLength: 6 }),
    fc.dictionary(fc.string().filter((k) => !BAD.has(k) && k !== '__proto_'), tie('value'), { maxKeys: 6 }),
  ),
})).value;

test('any random bytes: decoded to plain data or rejected with a reason, never an exception of another kind', () => {
  property('random bytes', fc.uint8Array({ maxLength: 300 }), (b) => {
    const r = classify(b) as { ok?: unknown };
    if ('ok' in r) assertPlain(r.ok);
  }, RUNS * 10);
});

test('random bytes biased to msgpack headers (containers, lengths, extensions)', () => {
  const token = fc.oneof(
    fc.integer({ min: 0x80, max: 0x9f }),
    fc.constantFrom(0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xc1, 0x72, 0xff),
    fc.integer({ min: 0, max: 255 }),
  );
  property('header-biased bytes', fc.array(token, { maxLength: 120 }), (arr) => {
    const r = classify(Uint8Array.from(arr)) as { ok?: unknown };
    if ('ok' in r) assertPlain(r.ok);
  }, RUNS * 10);
});

test('well-formed data round-trips exactly as msgpackr decodes it', () => {
  property('valid msgpack', plainValue, (v) => {
    const bytes = pack(v);
    const r = classify(bytes, { ...L, maxBytes: 1 << 20 }) as { ok?: unknown; reason?: string };
    if ('reason' in r) {
      assert.ok(r.reason === 'too-deep' || r.reason === 'too-many-keys', `valid input rejected: ${r.reason}`);
      return;
    }
    assertPlain(r.ok);
    // msgpackr normalizes -0 and buffers; compare against its own decoding.
    assert.deepEqual(r.ok, new Packr({ useRecords: false }).unpack(bytes));
  });
});

test('every truncation of valid msgpack is rejected as a decode error', () => {
  property('truncated msgpack', fc.tuple(plainValue, fc.nat()), ([v, cut]) => {
    const bytes = pack(v);
    if (bytes.length < 2) return;
    const at = cut % bytes.length; // strictly shorter than the message
    assert.deepEqual(classify(bytes.subarray(0, at)), { reason: 'decode' }, `cut at ${at} of ${bytes.length}`);
  });
});

test('huge arrays, maps and strings are rejected before allocation', () => {
  const cases: [Uint8Array, string][] = [
    [Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff]), 'too-many-keys'],
    [Uint8Array.from([0xdf, 0xff, 0xff, 0xff, 0xff]), 'too-many-keys'],
    [Uint8Array.from([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]), 'too-large'],
    [Uint8Array.from([0xc6, 0x7f, 0xff, 0xff, 0xff]), 'too-large'],
    [Uint8Array.from([0xdc, 0x01, 0x00, 0xc0]), 'decode'], // 256 elements claimed, 1 present
    [new Uint8Array(L.maxBytes + 1), 'too-large'],
  ];
  for (const [b, reason] of cases) assert.deepEqual(classify(b), { reason }, Buffer.from(b.subarray(0, 8)).toString('hex'));
  property('huge containers', fc.record({ kind: fc.constantFrom(0xdc, 0xdd, 0xde, 0xdf, 0xd9, 0xda, 0xdb, 0xc4, 0xc5, 0xc6), len: fc.integer({ min: L.maxKeys + 1, max: 0xffffffff }), fill: fc.nat({ max: 64 }) }), ({ kind, len, fill }) => {
    const size = kind === 0xdc || kind === 0xda || kind === 0xde || kind === 0xc5 ? 2 : kind === 0xd9 || kind === 0xc4 ? 1 : 4;
    const h = new Uint8Array(1 + size + fill).fill(0xc0);
    h[0] = kind;
    const l = len % 2 ** (8 * size);
    for (let i = 0; i < size; i++) h[1 + i] = (l >>> (8 * (size - 1 - i))) & 0xff;
    const r = classify(h) as { reason?: string; ok?: unknown };
    if (l <= fill) return; // small enough to be real
    assert.ok(r.reason, `accepted a header claiming ${l}`);
  });
  // A real long string within limits is fine; one byte over the string cap is not.
  assert.equal((classify(pack('x'.repeat(1000)), { ...L, maxStringBytes: 1000 }) as { ok: string }).ok.length, 1000);
  assert.deepEqual(classify(pack('x'.repeat(1001)), { ...L, maxStringBytes: 1000 }), { reason: 'too-large' });
  assert.deepEqual(classify(pack(new Array(L.maxKeys + 1).fill(0))), { reason: 'too-many-keys' });
});

// Nested [ { k: [ { k: ... 1 } ] } ] built byte by byte: msgpackr's own packer overflows the stack first.
function nested(depth: number): Uint8Array {
  const parts: number[] = [];
  for (let i = 0; i < depth; i++) parts.push(...(i % 2 ? [0x81, 0xa1, 0x6b] : [0x91]));
  parts.push(0x01);
  return Uint8Array.from(parts);
}

test('deep nesting is rejected without recursion, at any depth', () => {
  for (const depth of [L.maxDepth + 1, 1000, 200_000]) {
    assert.deepEqual(classify(nested(depth), { ...L, maxBytes: 1 << 20 }), { reason: 'too-deep' }, `depth ${depth}`);
  }
  // Exactly maxDepth is accepted and decodes to the same structure.
  const ok = classify(nested(L.maxDepth)) as { ok: unknown };
  let v: unknown = ok.ok;
  for (let i = 0; i < L.maxDepth; i++) v = i % 2 ? (v as { k: unknown }).k : (v as unknown[])[0];
  assert.equal(v, 1);
  property('deep nesting', fc.integer({ min: L.maxDepth + 1, max: 100_000 }), (depth) => {
    assert.deepEqual(classify(nested(depth), { ...L, maxBytes: 1 << 20 }), { reason: 'too-deep' });
  }, Math.max(20, RUNS / 10));
});

test('__proto__, constructor and prototype keys are rejected anywhere, and nothing is polluted', () => {
  const evil = [
    JSON.parse('{"__proto__": {"polluted": true}}'),
    { a: [JSON.parse('{"__proto__": {"polluted": true}}')] },
    { constructor: { prototype: { polluted: true } } },
    { x: { prototype: 1 } },
  ];
  for (const e of evil) assert.deepEqual(classify(pack(e)), { reason: 'bad-key' });
  property('proto keys', fc.tuple(plainValue, fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.array(fc.constantFrom('a', 0), { maxLength: 5 })), ([inner, key, path]) => {
    let x: unknown = JSON.parse(`{${JSON.stringify(key)}: 1}`);
    (x as Record<string, unknown>)[key === '__proto__' ? 'other' : 'other'] = inner;
    for (const p of path) x = p === 0 ? [x] : { a: x };
    assert.deepEqual(classify(pack(x), { ...L, maxBytes: 1 << 20, maxDepth: 64 }), { reason: 'bad-key' });
  });
  assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  // Non-string, non-integer keys are refused too (msgpackr would stringify them).
  assert.deepEqual(classify(pack(new Map<unknown, number>([[[1], 1]]))), { reason: 'bad-key' });
  assert.deepEqual(classify(pack(new Map<unknown, number>([[null, 1]]))), { reason: 'bad-key' });
  assert.ok('ok' in (classify(pack(new Map<unknown, number>([[3, 1]]))) as object));
});

test('extensions (records, structured clone, Error, RegExp, Set, typed arrays, dates, undefined) are refused', () => {
  const withTypes = new Packr({ structuredClone: true, moreTypes: true });
  const records = new Packr({ useRecords: true });
  const values = [new Error('x'), /re/g, new Set([1]), new Map([[1, 2]]), new Float64Array([1]), new Date(0), undefined];
  for (const v of values) {
    const b = withTypes.pack(v);
    const r = classify(b) as { reason?: string };
    if (v instanceof Map) { assert.ok(!('reason' in r) || r.reason === 'extension'); continue; }
    assert.deepEqual(r, { reason: 'extension' }, String(v));
  }
  const cyc: Record<string, unknown> = { a: 1 };
  cyc['self'] = cyc;
  assert.deepEqual(classify(withTypes.pack(cyc)), { reason: 'extension' });
  assert.deepEqual(classify(records.pack([{ a: 1 }, { a: 2 }])), { reason: 'extension' });
  property('extension types', fc.tuple(fc.constantFrom(0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xc7, 0xc8, 0xc9), fc.integer({ min: -128, max: 127 }), fc.uint8Array({ maxLength: 20 })), ([fmt, type, data]) => {
    const head = fmt >= 0xd4 ? [fmt, type & 0xff] : [fmt, ...(fmt === 0xc7 ? [data.length] : fmt === 0xc8 ? [0, data.length] : [0, 0, 0, data.length]), type & 0xff];
    const body = fmt >= 0xd4 ? new Uint8Array([1, 2, 4, 8, 16][fmt - 0xd4]!) : data;
    const r = classify(Uint8Array.from([...head, ...body])) as { reason?: string };
    assert.equal(r.reason, 'extension');
  });
});

test('NaN and Infinity: passed through by default, refused with rejectNonFinite', () => {
  property('non-finite numbers', fc.tuple(fc.constantFrom(NaN, Infinity, -Infinity), fc.boolean()), ([x, f32]) => {
    const b = pack({ values: [1, x] });
    if (f32) {
      // Rewrite the float64 as a float32 (msgpackr only emits float64 for these).
      const i = b.indexOf(0xcb);
      const f = Buffer.alloc(5);
      f[0] = 0xca;
      f.writeFloatBE(x, 1);
      const nb = Buffer.concat([b.subarray(0, i), f, b.subarray(i + 9)]);
      assert.deepEqual(classify(nb, { ...L, rejectNonFinite: true }), { reason: 'bad-number' });
      return;
    }
    assert.deepEqual(classify(b, { ...L, rejectNonFinite: true }), { reason: 'bad-number' });
    const r = classify(b) as { ok: { values: number[] } };
    assert.ok(Object.is(r.ok.values[1], x));
  });
  // 64-bit integers outside the exact range are refused rather than rounded.
  const big = Buffer.from([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
  assert.deepEqual(classify(big), { reason: 'bad-number' });
  assert.deepEqual(classify(Buffer.from([0xcf, 0, 0, 0, 1, 0, 0, 0, 0])), { ok: 2 ** 32 });
});

test('limits are validated and trailing bytes refused', () => {
  assert.throws(() => decodeUntrusted(new Uint8Array([1]), { maxBytes: 0, maxDepth: 1, maxKeys: 1 }), /maxBytes must be a positive integer/);
  assert.throws(() => scanMsgpack(new Uint8Array([1]), { maxBytes: 10, maxDepth: NaN, maxKeys: 1 }), /maxDepth/);
  assert.deepEqual(classify(Uint8Array.from([0x01, 0x02])), { reason: 'decode' });
  assert.deepEqual(classify(new Uint8Array(0)), { reason: 'decode' });
  assert.deepEqual(classify('abc' as unknown as Uint8Array), { reason: 'decode' });
});

test('RejectCounter counts by reason', () => {
  const c = new RejectCounter();
  for (const b of [Uint8Array.from([0x91]), Uint8Array.from([0xc1]), pack(JSON.parse('{"__proto__":1}'))]) {
    try {
      decodeUntrusted(b, L);
    } catch (e) {
      c.add(e);
    }
  }
  c.add('forged');
  c.add(new Error('boom'));
  assert.deepEqual(c.snapshot(), { 'bad-key': 1, decode: 2, forged: 1, other: 1, total: 5 });
  assert.equal(c.get('decode'), 2);
  c.reset();
  assert.deepEqual(c.snapshot(), { total: 0 });
});

test('report the number of inputs tried', () => {
  const total = Object.values(tried).reduce((a, b) => a + b, 0);
  console.log(`# fuzz-untrusted inputs tried (PEERTUNE_FUZZ_RUNS=${RUNS}): ${JSON.stringify(tried)} total=${total}`);
  assert.ok(total >= RUNS);
});
