/**
 * Wire decoding for everything that arrives from another machine: size caps before decoding, then
 * src/security/untrusted.ts (an iterative scan of the msgpack bytes that refuses extensions, records,
 * `__proto__`-style keys and absurd nesting before msgpackr sees them), then a count of all values.
 * Every rejection is a `WireError` whose `reason` is a short stable label used in reject counters.
 */
import { Packr } from 'msgpackr';
import { decodeUntrusted, UntrustedInputError, type RejectReason } from '../security/untrusted.js';
import { PeertuneError } from '../errors.js';

export class WireError extends PeertuneError {
  override name = 'WireError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const packr = new Packr({ useRecords: false, structuredClone: false, moreTypes: false, encodeUndefinedAsNil: true, variableMapSize: true });

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
  /** Longest string or byte string, in bytes (default: maxBytes). */
  maxStringLength?: number;
}

// The counter labels predate untrusted.ts; operators grep for them (docs/errors.md), so they stay.
const LABEL: Record<RejectReason, string> = {
  'too-large': 'string-too-long',
  decode: 'undecodable',
  'too-deep': 'too-deep',
  'too-many-keys': 'too-many-values',
  'bad-key': 'forbidden-key',
  extension: 'not-plain',
  'bad-number': 'undecodable',
  schema: 'schema',
  forged: 'schema',
  replay: 'schema',
  signature: 'schema',
};

/** Decodes untrusted bytes into plain data or throws a WireError naming what was wrong. */
export function unpackUntrusted(bytes: Uint8Array, limits: DecodeLimits): unknown {
  if (!(bytes instanceof Uint8Array)) throw new WireError('not-bytes', 'message is not a byte array');
  if (bytes.byteLength > limits.maxBytes) throw new WireError('too-large', `message of ${bytes.byteLength} bytes exceeds the limit of ${limits.maxBytes}`);
  if (bytes.byteLength === 0) throw new WireError('empty', 'message is empty');
  const maxNodes = limits.maxNodes ?? 100_000;
  let value: unknown;
  try {
    value = decodeUntrusted(bytes, {
      maxBytes: limits.maxBytes,
      maxDepth: limits.maxDepth ?? 16,
      maxKeys: Math.max(1, Math.min(maxNodes, limits.maxBytes)),
      maxStringBytes: limits.maxStringLength ?? limits.maxBytes,
    });
  } catch (e) {
    if (e instanceof UntrustedInputError) throw new WireError(LABEL[e.reason] ?? 'undecodable', `message refused: ${e.message}`);
    throw new WireError('undecodable', `message is not valid msgpack: ${(e as Error).message}`);
  }
  // Every value takes at least one byte of msgpack: a message no longer than the limit cannot pass it.
  if (bytes.byteLength > maxNodes) countValues(value, maxNodes);
  return value;
}

/** Total values in the tree, counted without recursion (the scan already bounded the depth). */
function countValues(root: unknown, maxNodes: number): void {
  let nodes = 0;
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (++nodes > maxNodes) throw new WireError('too-many-values', `message has more than ${maxNodes} values`);
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array) continue;
    if (Array.isArray(v)) for (const x of v) stack.push(x);
    else for (const k of Object.keys(v)) stack.push((v as Record<string, unknown>)[k]);
  }
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

/**
 * A push-fed byte source for a stream's sink: frames queue until the sink pulls them; `end()` closes
 * the source once the queue drains.
 */
export function pushable(): { push(x: Uint8Array): void; end(): void; source: AsyncGenerator<Uint8Array> } {
  const queue: Uint8Array[] = [];
  let ended = false;
  let wake: (() => void) | null = null;
  async function* source(): AsyncGenerator<Uint8Array> {
    for (;;) {
      while (queue.length) yield queue.shift()!;
      if (ended) return;
      await new Promise<void>((r) => (wake = r));
      wake = null;
    }
  }
  return {
    push(x) {
      if (ended) return;
      queue.push(x);
      wake?.();
    },
    end() {
      ended = true;
      wake?.();
    },
    source: source(),
  };
}
