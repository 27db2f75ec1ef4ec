/**
 * Decoding bytes that came from the network. msgpackr is built for trusted data: it has no size or depth
 * limits, it recurses (deep nesting overflows the stack), and its extensions (records, structured clone,
 * Error/RegExp/Set/typed arrays, timestamps) are on by default. So a hostile message is first scanned
 * without allocating anything: an iterative pass over the msgpack bytes checks the total size, nesting
 * depth, container sizes against both the limits and the bytes actually left, map keys (strings or
 * integers only, never `__proto__`/`constructor`/`prototype`), refuses every extension type, and refuses
 * trailing bytes. Only bytes that pass are handed to a plain msgpackr Unpackr (no records, no structured
 * clone, copied buffers, 64-bit integers as numbers). What comes out is plain data: null, booleans,
 * numbers, strings, Uint8Arrays, arrays and ordinary objects without dangerous own keys, so spreading or
 * `Object.assign`-ing it cannot touch a prototype. Schema checks (is this a change message?) are the
 * caller's job; this module only guarantees the value is safe to look at.
 */
import { Unpackr } from 'msgpackr';
import { PeertuneError } from '../errors.js';

export type RejectReason =
  | 'too-large'
  | 'decode'
  | 'too-deep'
  | 'too-many-keys'
  | 'bad-key'
  | 'extension'
  | 'bad-number'
  | 'schema'
  | 'forged'
  | 'replay'
  | 'signature';

export class UntrustedInputError extends PeertuneError {
  override name = 'UntrustedInputError';
  constructor(
    readonly reason: RejectReason,
    message: string,
  ) {
    super(`${reason}: ${message}`);
  }
}

export interface UntrustedLimits {
  /** Largest accepted message, checked before anything is decoded. */
  maxBytes: number;
  /** Deepest nesting of arrays/maps (a top-level array is depth 1). */
  maxDepth: number;
  /** Most elements in one array or entries in one map. */
  maxKeys: number;
  /** Longest string or byte string (default: maxBytes). */
  maxStringBytes?: number;
  /** Reject NaN and ±Infinity floats (default false: the schema decides, e.g. an intermediate value of Infinity is legal). */
  rejectNonFinite?: boolean;
}

export const DEFAULT_LIMITS: Readonly<UntrustedLimits> = { maxBytes: 1 << 20, maxDepth: 16, maxKeys: 10_000 };

const unpackr = new Unpackr({
  useRecords: false,
  mapsAsObjects: true,
  structuredClone: false,
  moreTypes: false,
  bundleStrings: false,
  sequential: false,
  copyBuffers: true,
  int64AsType: 'number',
});

// UTF-8 bytes of keys that reach Object.prototype when a decoded object is merged into another.
const BAD_KEYS = ['__proto__', 'constructor', 'prototype'].map((k) => new TextEncoder().encode(k));

function isBadKey(b: Uint8Array, start: number, len: number): boolean {
  outer: for (const k of BAD_KEYS) {
    if (k.length !== len) continue;
    for (let i = 0; i < len; i++) if (b[start + i] !== k[i]) continue outer;
    return true;
  }
  return false;
}

function checkLimits(l: UntrustedLimits): void {
  for (const name of ['maxBytes', 'maxDepth', 'maxKeys'] as const) {
    const v = l[name];
    if (!Number.isInteger(v) || v < 1) throw new RangeError(`decodeUntrusted: ${name} must be a positive integer, got ${String(v)}`);
  }
}

/**
 * Checks the structure of one msgpack value in `b` against the limits without decoding it. Throws
 * UntrustedInputError; returns normally only if msgpackr can decode the bytes to plain data.
 */
export function scanMsgpack(b: Uint8Array, limits: UntrustedLimits): void {
  checkLimits(limits);
  const maxStr = limits.maxStringBytes ?? limits.maxBytes;
  const end = b.length;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // remaining[i]: items still to read in the i-th open container (maps count keys and values).
  const remaining: number[] = [];
  const isMap: boolean[] = [];
  let pos = 0;
  const fail = (reason: RejectReason, msg: string): never => {
    throw new UntrustedInputError(reason, `${msg} (at byte ${pos} of ${end})`);
  };
  const need = (n: number, what: string): void => {
    if (pos + n > end) fail('decode', `truncated ${what}: needs ${n} byte(s), ${end - pos} left`);
  };
  const uint = (size: 1 | 2 | 4): number => {
    need(size, 'length');
    const v = size === 1 ? b[pos]! : size === 2 ? view.getUint16(pos) : view.getUint32(pos);
    pos += size;
    return v;
  };

  for (;;) {
    if (pos >= end) fail('decode', 'truncated message');
    const depth = remaining.length;
    const asKey = depth > 0 && isMap[depth - 1]! && remaining[depth - 1]! % 2 === 0;
    const t = b[pos++]!;
    let strLen = -1; // set for str formats
    let binLen = -1;
    let container = -1; // element count for arrays, entry count for maps
    let map = false;
    let intKey = false;

    if (t <= 0x7f || t >= 0xe0) intKey = true;
    else if (t <= 0x8f) { container = t & 0x0f; map = true; }
    else if (t <= 0x9f) container = t & 0x0f;
    else if (t <= 0xbf) strLen = t & 0x1f;
    else {
      switch (t) {
        case 0xc0: case 0xc2: case 0xc3: break;
        case 0xc1: fail('decode', 'byte 0xc1 is never used in msgpack'); break;
        case 0xc4: binLen = uint(1); break;
        case 0xc5: binLen = uint(2); break;
        case 0xc6: binLen = uint(4); break;
        case 0xc7: case 0xc8: case 0xc9:
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8: {
          // The type byte follows the length for ext8/16/32, comes first for fixext.
          const type = b[t >= 0xd4 ? pos : pos + (t === 0xc7 ? 1 : t === 0xc8 ? 2 : 4)];
          fail('extension', `msgpack extension${type === undefined ? '' : ` type 0x${type.toString(16)}`} is not accepted (records, structured clone, dates and typed values are refused)`);
          break;
        }
        case 0xca: case 0xcb: {
          const size = t === 0xca ? 4 : 8;
          need(size, 'float');
          const v = size === 4 ? view.getFloat32(pos) : view.getFloat64(pos);
          if (limits.rejectNonFinite && !Number.isFinite(v)) fail('bad-number', `non-finite number ${v}`);
          pos += size;
          break;
        }
        case 0xcc: case 0xd0: need(1, 'integer'); pos += 1; intKey = true; break;
        case 0xcd: case 0xd1: need(2, 'integer'); pos += 2; intKey = true; break;
        case 0xce: case 0xd2: need(4, 'integer'); pos += 4; intKey = true; break;
        case 0xcf: case 0xd3: {
          need(8, 'integer');
          const v = t === 0xcf ? view.getBigUint64(pos) : view.getBigInt64(pos);
          if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
            fail('bad-number', `64-bit integer ${v} is outside the exactly representable range`);
          }
          pos += 8;
          intKey = true;
          break;
        }
        case 0xd9: strLen = uint(1); break;
        case 0xda: strLen = uint(2); break;
        case 0xdb: strLen = uint(4); break;
        case 0xdc: container = uint(2); break;
        case 0xdd: container = uint(4); break;
        case 0xde: container = uint(2); map = true; break;
        case 0xdf: container = uint(4); map = true; break;
      }
    }

    if (asKey && strLen < 0 && !intKey) fail('bad-key', `map key of msgpack type 0x${t.toString(16)}; only string and integer keys are accepted`);
    if (strLen >= 0 || binLen >= 0) {
      const len = Math.max(strLen, binLen);
      if (len > maxStr) fail('too-large', `${strLen >= 0 ? 'string' : 'byte string'} of ${len} bytes exceeds ${maxStr}`);
      need(len, strLen >= 0 ? 'string' : 'byte string');
      if (asKey && strLen >= 0 && isBadKey(b, pos, len)) {
        fail('bad-key', `key "${new TextDecoder().decode(b.subarray(pos, pos + len))}" is not accepted`);
      }
      pos += len;
    }
    if (container >= 0) {
      if (depth + 1 > limits.maxDepth) fail('too-deep', `nesting deeper than ${limits.maxDepth}`);
      if (container > limits.maxKeys) fail('too-many-keys', `${map ? 'map' : 'array'} of ${container} ${map ? 'entries' : 'elements'} exceeds ${limits.maxKeys}`);
      const items = map ? container * 2 : container;
      // Each item takes at least one byte: a header claiming more than is left is a lie.
      if (items > end - pos) fail('decode', `${map ? 'map' : 'array'} claims ${container} ${map ? 'entries' : 'elements'} but only ${end - pos} byte(s) follow`);
      if (items > 0) {
        remaining.push(items);
        isMap.push(map);
        continue;
      }
    }
    // A complete value: close every container it completes.
    let done = true;
    while (remaining.length > 0) {
      const top = remaining.length - 1;
      remaining[top]!--;
      if (remaining[top]! > 0) { done = false; break; }
      remaining.pop();
      isMap.pop();
    }
    if (done) break;
  }
  if (pos !== end) fail('decode', `${end - pos} trailing byte(s) after the message`);
}

/**
 * Decodes one msgpack value from an untrusted source, or throws UntrustedInputError with a `reason`.
 * The size check comes first, so an oversized message costs nothing.
 */
export function decodeUntrusted(bytes: Uint8Array, limits: UntrustedLimits = DEFAULT_LIMITS): unknown {
  checkLimits(limits);
  if (!(bytes instanceof Uint8Array)) throw new UntrustedInputError('decode', `expected bytes, got ${bytes === null ? 'null' : typeof bytes}`);
  if (bytes.length > limits.maxBytes) throw new UntrustedInputError('too-large', `message of ${bytes.length} bytes exceeds ${limits.maxBytes}`);
  scanMsgpack(bytes, limits);
  try {
    return unpackr.unpack(bytes);
  } catch (err) {
    // The scan should make this unreachable; if msgpackr still objects, the input is rejected all the same.
    throw new UntrustedInputError('decode', (err as Error).message);
  }
}

/**
 * Counts rejected inputs by reason, for logs, the dashboard and tests ("the node dropped it and said so").
 */
export class RejectCounter {
  private readonly counts = new Map<string, number>();
  private totalCount = 0;

  /** Records one reject; accepts an UntrustedInputError, a reason code, or any other error (counted as `other`). */
  add(reasonOrError: RejectReason | string | unknown): string {
    const reason =
      typeof reasonOrError === 'string' ? reasonOrError : reasonOrError instanceof UntrustedInputError ? reasonOrError.reason : 'other';
    this.counts.set(reason, (this.counts.get(reason) ?? 0) + 1);
    this.totalCount++;
    return reason;
  }

  get total(): number {
    return this.totalCount;
  }

  get(reason: string): number {
    return this.counts.get(reason) ?? 0;
  }

  /** A copy of the counts, reasons sorted, plus `total`. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const k of [...this.counts.keys()].sort()) out[k] = this.counts.get(k)!;
    out['total'] = this.totalCount;
    return out;
  }

  reset(): void {
    this.counts.clear();
    this.totalCount = 0;
  }
}
