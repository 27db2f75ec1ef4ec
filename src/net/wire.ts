/**
 * Wire decoding for everything that arrives from another machine. msgpackr is configured for
 * untrusted input (no records, no structured clone, no extension types beyond plain data), sizes are
 * capped before decoding, and decoded values are walked once to refuse anything that is not plain
 * data: class instances, `__proto__` / `constructor` / `prototype` keys, absurd nesting or breadth.
 * Every rejection is a `WireError` whose `reason` is a short stable label used in reject counters.
 */
import { Packr, Unpackr } from 'msgpackr';

export class WireError extends Error {
  override name = 'WireError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false, encodeUndefinedAsNil: true, variableMapSize: true });
const unpackr = new Unpackr({ useRecords: false, structuredClone: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' } as ConstructorParameters<typeof Unpackr>[0]);

/** Encodes plain data (objects, arrays, numbers, strings, booleans, null, Uint8Array). */
export function pack(value: unknown): Uint8Array {
  const b = packr.pack(value);
  // Buffer -> a plain view so Automerge stores it as bytes and equality checks are by content.
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

export interface DecodeLimits {
  maxBytes: number;
  maxDepth?: number;
  /** Total number of values (array items, map entries) in the decoded tree. */
  maxNodes?: number;
  maxStringLength?: number;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** Decodes untrusted bytes into plain data or throws a WireError naming what was wrong. */
export function unpackUntrusted(bytes: Uint8Array, limits: DecodeLimits): unknown {
  if (!(bytes instanceof Uint8Array)) throw new WireError('not-bytes', 'message is not a byte array');
  if (bytes.byteLength > limits.maxBytes) throw new WireError('too-large', `message of ${bytes.byteLength} bytes exceeds the limit of ${limits.maxBytes}`);
  if (bytes.byteLength === 0) throw new WireError('empty', 'message is empty');
  let value: unknown;
  try {
    value = unpackr.unpack(bytes);
  } catch (e) {
    throw new WireError('undecodable', `message is not valid msgpack: ${(e as Error).message}`);
  }
  checkPlain(value, limits.maxDepth ?? 16, limits.maxNodes ?? 100_000, limits.maxStringLength ?? 1 << 20);
  return value;
}

function checkPlain(root: unknown, maxDepth: number, maxNodes: number, maxString: number): void {
  let nodes = 0;
  const walk = (v: unknown, depth: number): void => {
    if (++nodes > maxNodes) throw new WireError('too-many-values', `message has more than ${maxNodes} values`);
    if (v === null || typeof v === 'number' || typeof v === 'boolean') return;
    if (typeof v === 'string') {
      if (v.length > maxString) throw new WireError('string-too-long', `a string of ${v.length} characters exceeds ${maxString}`);
      return;
    }
    if (v instanceof Uint8Array) return;
    if (depth >= maxDepth) throw new WireError('too-deep', `message nests deeper than ${maxDepth}`);
    if (Array.isArray(v)) {
      for (const x of v) walk(x, depth + 1);
      return;
    }
    if (typeof v === 'object') {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw new WireError('not-plain', 'message contains a non-plain object');
      for (const k of Object.keys(v)) {
        if (FORBIDDEN_KEYS.has(k)) throw new WireError('forbidden-key', `message contains the key "${k}"`);
        walk((v as Record<string, unknown>)[k], depth + 1);
      }
      return;
    }
    throw new WireError('bad-type', `message contains a value of type ${typeof v}`);
  };
  walk(root, 0);
}

/** A plain object (not an array, not bytes), as a record; otherwise a WireError. */
export function asObject(v: unknown, what: string): Record<string, unknown> {
  if (!v || typeof v !== 'object' || Array.isArray(v) || v instanceof Uint8Array) throw new WireError('schema', `${what} must be a map`);
  return v as Record<string, unknown>;
}

/** Length-prefixed frames over a byte stream: 4-byte big-endian length, then the payload. */
export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.byteLength);
  new DataView(out.buffer).setUint32(0, payload.byteLength);
  out.set(payload, 4);
  return out;
}

/**
 * Splits an incoming chunked byte stream into frames, refusing a declared length above `maxFrame`
 * before buffering it (so a peer cannot make us allocate a huge buffer).
 */
export async function* readFrames(source: AsyncIterable<Uint8Array | { subarray(): Uint8Array }>, maxFrame: number): AsyncGenerator<Uint8Array> {
  // Chunks are kept in a list and joined once a whole frame is there: no quadratic copying.
  let chunks: Uint8Array[] = [];
  let total = 0;
  let need = -1;
  const take = (n: number): Uint8Array => {
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = chunks[0]!;
      const k = Math.min(c.byteLength, n - off);
      out.set(c.subarray(0, k), off);
      off += k;
      if (k === c.byteLength) chunks.shift();
      else chunks[0] = c.subarray(k);
    }
    total -= n;
    return out;
  };
  for await (const chunk of source) {
    const c = chunk instanceof Uint8Array ? chunk : chunk.subarray();
    if (c.byteLength === 0) continue;
    chunks.push(c);
    total += c.byteLength;
    for (;;) {
      if (need < 0) {
        if (total < 4) break;
        const h = take(4);
        need = new DataView(h.buffer).getUint32(0);
        if (need > maxFrame) throw new WireError('too-large', `frame of ${need} bytes exceeds the limit of ${maxFrame}`);
      }
      if (total < need) break;
      const payload = take(need);
      need = -1;
      yield payload;
    }
  }
  chunks = [];
}
