/**
 * Bounding the work of a change before Automerge decodes it (issue 15 F1, HOLE-13). A change chunk
 * is a few headers and a set of run-length encoded columns; a run of 300,000 operations takes three
 * bytes, so a change's size bounds nothing. `countChangeRows` walks the chunk's headers and the run
 * lengths of every column (without materialising a single operation) and returns the largest row
 * count of any column: the number of operations (and of predecessors) Automerge would build.
 * Compressed chunks and deflated columns are refused outright: honest peers send neither (a change
 * as `getLastLocalChange` returns it is uncompressed), and inflating them is work done before any check.
 *
 * Layout (Automerge binary format): magic (4) checksum (4) type (1) length (uleb), then
 * deps (uleb n, n x 32 bytes), actor (uleb len, bytes), seq (uleb), startOp (uleb), time (sleb),
 * message (uleb len, bytes), other actors (uleb n, each uleb len + bytes), column metadata
 * (uleb n, n x (uleb spec, uleb length)), the column data, and extra bytes.
 */
import { createHash } from 'node:crypto';
import { PeertuneError } from '../../errors.js';

export class ChangeBoundsError extends PeertuneError {
  override name = 'ChangeBoundsError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

const MAGIC = [0x85, 0x6f, 0x4a, 0x83];

class Reader {
  constructor(
    readonly b: Uint8Array,
    public o: number,
    readonly end: number,
  ) {}
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.o >= this.end) throw new ChangeBoundsError('undecodable', 'a change ends inside a number');
      const x = this.b[this.o++]!;
      result += (x & 0x7f) * mul;
      if ((x & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) throw new ChangeBoundsError('undecodable', 'a change holds a number out of range');
        return result;
      }
      mul *= 128;
    }
    throw new ChangeBoundsError('undecodable', 'a change holds an over-long number');
  }
  sleb(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.o >= this.end) throw new ChangeBoundsError('undecodable', 'a change ends inside a number');
      const x = this.b[this.o++]!;
      result += (x & 0x7f) * mul;
      mul *= 128;
      if ((x & 0x80) === 0) {
        if (x & 0x40) result -= mul;
        if (!Number.isSafeInteger(result)) throw new ChangeBoundsError('undecodable', 'a change holds a number out of range');
        return result;
      }
    }
    throw new ChangeBoundsError('undecodable', 'a change holds an over-long number');
  }
  skip(n: number): void {
    if (n < 0 || this.o + n > this.end) throw new ChangeBoundsError('undecodable', 'a change field runs past its end');
    this.o += n;
  }
}

/** Rows of one column, from its run lengths only. Stops early once `limit` is passed. */
function columnRows(b: Uint8Array, start: number, len: number, type: number, limit: number): number {
  const r = new Reader(b, start, start + len);
  let rows = 0;
  if (type === 7) return 0; // raw value bytes: no rows of their own (their lengths are in the metadata column)
  while (r.o < r.end && rows <= limit) {
    if (type === 4) {
      rows += r.uleb(); // boolean: alternating run lengths
      continue;
    }
    const count = r.sleb();
    const readValue = (): void => {
      if (type === 5) r.skip(r.uleb());
      else if (type === 3) r.sleb();
      else r.uleb();
    };
    if (count > 0) {
      readValue();
      rows += count;
    } else if (count < 0) {
      for (let i = 0; i < -count && rows <= limit; i++, rows++) readValue();
    } else rows += r.uleb(); // a run of nulls
  }
  return rows;
}

/**
 * The largest row count of any column of an uncompressed change chunk (about its number of
 * operations); throws ChangeBoundsError('too-many-ops') as soon as it passes `limit`, and
 * ChangeBoundsError('undecodable' | 'compressed' | 'unexpected-chunk') for what is not a plain change.
 */
export function countChangeRows(c: Uint8Array, limit: number): number {
  if (!(c instanceof Uint8Array) || c.byteLength < 10 || MAGIC.some((x, i) => c[i] !== x)) throw new ChangeBoundsError('undecodable', 'not an Automerge chunk');
  const type = c[8];
  if (type === 2) throw new ChangeBoundsError('compressed', 'a compressed change is refused (honest peers send them uncompressed)');
  if (type !== 1) throw new ChangeBoundsError('unexpected-chunk', `an Automerge chunk of type ${type} where a change was expected`);
  const h = new Reader(c, 9, c.byteLength);
  const bodyLen = h.uleb();
  const r = new Reader(c, h.o, h.o + bodyLen);
  if (r.end > c.byteLength) throw new ChangeBoundsError('undecodable', 'a change is shorter than its header says');
  const deps = r.uleb();
  r.skip(deps * 32);
  r.skip(r.uleb()); // actor
  r.uleb(); // seq
  r.uleb(); // startOp
  r.sleb(); // time
  r.skip(r.uleb()); // message
  const others = r.uleb();
  if (others > limit) throw new ChangeBoundsError('too-many-ops', `a change names ${others} actors`);
  for (let i = 0; i < others; i++) r.skip(r.uleb());
  const ncols = r.uleb();
  if (ncols > 64) throw new ChangeBoundsError('undecodable', `a change has ${ncols} columns`);
  const cols: [number, number][] = [];
  for (let i = 0; i < ncols; i++) cols.push([r.uleb(), r.uleb()]);
  let off = r.o;
  let max = 0;
  for (const [spec, len] of cols) {
    if (spec & 8) throw new ChangeBoundsError('compressed', 'a change with a deflated column is refused');
    if (off + len > r.end) throw new ChangeBoundsError('undecodable', 'a change column runs past its end');
    const rows = columnRows(c, off, len, spec & 7, limit);
    if (rows > limit) throw new ChangeBoundsError('too-many-ops', `a change holds more than ${limit} operations (counted from its columns before decoding)`);
    if (rows > max) max = rows;
    off += len;
  }
  return max;
}

// ---------------------------------------------------------------- decoding the changes trial shards hold

/**
 * A decoded change whose every operation puts bytes under a string key of the root map: what trial
 * shards hold (schema.ts), in the shape Automerge's `decodeChange` returns, with values as Uint8Array.
 */
export interface RootBytesChange {
  actor: string;
  author: null;
  seq: number;
  startOp: number;
  time: number;
  message: string | null;
  deps: string[];
  hash: string;
  ops: { action: 'set'; obj: '_root'; key: string; value: Uint8Array; pred: string[] }[];
}

/** Column specs of a change's operations: (column id << 4) | type (Automerge binary format). */
const COL = { objActor: 0x01, objCtr: 0x02, keyActor: 0x11, keyCtr: 0x13, keyStr: 0x15, insert: 0x34, action: 0x42, valMeta: 0x56, valRaw: 0x57, predNum: 0x70, predActor: 0x71, predCtr: 0x73 } as const;
const KNOWN_COLS = new Set<number>(Object.values(COL));
const ACTION_SET = 1;
const MAX_COUNTER = 2 ** 32 - 1;
const VALUE_BYTES = 7;
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });
/** UTF-8 text; NotSimple if it is not valid UTF-8. */
function utf8(b: Uint8Array): string {
  try {
    return utf8Decoder.decode(b);
  } catch {
    throw new NotSimple();
  }
}
const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** Why the fast path gave up: the caller decodes the change with Automerge instead. */
class NotSimple extends Error {}

/** Numbers as Automerge reads them, stricter: minimal encodings only (Automerge refuses overlong ones), safe integers only. */
class StrictReader extends Reader {
  override uleb(): number {
    const start = this.o;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (this.o >= this.end) throw new NotSimple();
      const x = this.b[this.o++]!;
      result += (x & 0x7f) * mul;
      if ((x & 0x80) === 0) {
        if (x === 0 && this.o - start > 1) throw new NotSimple();
        if (!Number.isSafeInteger(result)) throw new NotSimple();
        return result;
      }
      mul *= 128;
    }
    throw new NotSimple();
  }
  override sleb(): number {
    const start = this.o;
    let result = 0;
    let mul = 1;
    let prev = 0;
    for (let i = 0; i < 8; i++) {
      if (this.o >= this.end) throw new NotSimple();
      const x = this.b[this.o++]!;
      result += (x & 0x7f) * mul;
      mul *= 128;
      if ((x & 0x80) === 0) {
        if (this.o - start > 1 && ((x === 0 && (prev & 0x40) === 0) || (x === 0x7f && (prev & 0x40) !== 0))) throw new NotSimple();
        if (x & 0x40) result -= mul;
        if (!Number.isSafeInteger(result)) throw new NotSimple();
        return result;
      }
      prev = x;
    }
    throw new NotSimple();
  }
}

/** Run-length decoding of one column into `rows` values (null: a null row); NotSimple if it does not hold exactly `rows`. */
function rle<T>(r: Reader, rows: number, value: () => T): (T | null)[] {
  const out: (T | null)[] = [];
  while (r.o < r.end) {
    const count = r.sleb();
    if (count > 0) {
      if (out.length + count > rows) throw new NotSimple();
      const v = value();
      for (let i = 0; i < count; i++) out.push(v);
    } else if (count < 0) {
      if (out.length - count > rows) throw new NotSimple();
      for (let i = 0; i < -count; i++) out.push(value());
    } else {
      const nulls = r.uleb();
      if (out.length + nulls > rows) throw new NotSimple();
      for (let i = 0; i < nulls; i++) out.push(null);
    }
  }
  if (out.length !== rows) throw new NotSimple();
  return out;
}

/** Non-null unsigned values of a run-length column, exactly `rows` of them. */
function ulebColumn(b: Uint8Array, col: [number, number] | undefined, rows: number): number[] {
  if (!col) throw new NotSimple();
  const r = new StrictReader(b, col[0], col[0] + col[1]);
  const out = rle(r, rows, () => r.uleb());
  if (out.some((x) => x === null)) throw new NotSimple();
  return out as number[];
}

/**
 * Decodes an uncompressed change chunk without Automerge when it is the kind trial shards hold: every
 * operation a `set` of bytes under a string key of the root map (no insert), with the standard columns
 * only and nothing after them. Returns null for anything else (the caller asks Automerge, whose answer
 * is authoritative; the fast path only ever agrees with it, test/security/change-decode.test.ts).
 * Automerge's own `decodeChange` hands every byte of a value to JavaScript one at a time (a 16 KiB
 * record: 16,384 calls, ~4 ms); here a value is one copy of its bytes (issue 15 F15: a flood of fat
 * trials stalled a victim seconds in decoding alone). Call it after `countChangeRows` bounded the rows.
 */
export function decodeRootBytesChange(c: Uint8Array): RootBytesChange | null {
  try {
    return decodeSimple(c);
  } catch (e) {
    if (e instanceof NotSimple || e instanceof ChangeBoundsError) return null;
    throw e;
  }
}

function decodeSimple(c: Uint8Array): RootBytesChange {
  if (c.byteLength < 10 || MAGIC.some((x, i) => c[i] !== x) || c[8] !== 1) throw new NotSimple();
  const h = new StrictReader(c, 9, c.byteLength);
  const bodyLen = h.uleb();
  if (h.o + bodyLen !== c.byteLength) throw new NotSimple();
  const digest = createHash('sha256').update(c.subarray(8)).digest();
  for (let i = 0; i < 4; i++) if (digest[i] !== c[4 + i]) throw new NotSimple(); // a bad checksum: Automerge's error
  const r = new StrictReader(c, h.o, c.byteLength);
  const deps: string[] = [];
  for (let i = 0, n = r.uleb(); i < n; i++) {
    r.skip(32);
    deps.push(hex(c.subarray(r.o - 32, r.o)));
  }
  const bytes = (): Uint8Array => {
    const len = r.uleb();
    r.skip(len);
    return c.subarray(r.o - len, r.o);
  };
  // What honest writers produce, checked more strictly than Automerge needs: deps in order, actors
  // distinct, seq and startOp from 1, op counters within Automerge's u32.
  for (let i = 1; i < deps.length; i++) if (deps[i - 1]! >= deps[i]!) throw new NotSimple();
  const actor = (): string => {
    const b = bytes();
    if (b.byteLength === 0 || b.byteLength > 64) throw new NotSimple();
    return hex(b);
  };
  const actors = [actor()];
  const seq = r.uleb();
  const startOp = r.uleb();
  if (seq < 1 || startOp < 1) throw new NotSimple();
  const time = r.sleb();
  const msg = bytes();
  const message = msg.byteLength === 0 ? null : utf8(msg);
  for (let i = 0, n = r.uleb(); i < n; i++) {
    if (i >= 64) throw new NotSimple();
    actors.push(actor());
  }
  if (new Set(actors).size !== actors.length) throw new NotSimple();
  const ncols = r.uleb();
  if (ncols > 64) throw new NotSimple();
  const specs: [number, number][] = [];
  for (let i = 0; i < ncols; i++) specs.push([r.uleb(), r.uleb()]);
  const cols = new Map<number, [number, number]>();
  let off = r.o;
  let prev = -1;
  for (const [spec, len] of specs) {
    // Standard columns only, in order, none deflated, none for objects or list positions.
    if (spec <= prev || !KNOWN_COLS.has(spec) || spec === COL.objActor || spec === COL.objCtr || spec === COL.keyActor || spec === COL.keyCtr) throw new NotSimple();
    prev = spec;
    r.skip(len);
    cols.set(spec, [off, len]);
    off += len;
  }
  if (off !== c.byteLength) throw new NotSimple(); // extra bytes after the columns

  const keyCol = cols.get(COL.keyStr);
  if (!keyCol) throw new NotSimple();
  const kr = new StrictReader(c, keyCol[0], keyCol[0] + keyCol[1]);
  // The key column says how many operations there are; every other column must agree.
  const keys: string[] = [];
  while (kr.o < kr.end) {
    const count = kr.sleb();
    const readKey = (): string => {
      const len = kr.uleb();
      kr.skip(len);
      return utf8(c.subarray(kr.o - len, kr.o));
    };
    if (count > 0) {
      const k = readKey();
      for (let i = 0; i < count; i++) keys.push(k);
    } else if (count < 0) for (let i = 0; i < -count; i++) keys.push(readKey());
    else throw new NotSimple(); // a null key: a list position
    if (keys.length > 100_000) throw new NotSimple();
  }
  const n = keys.length;
  if (n === 0 || startOp + n > MAX_COUNTER) throw new NotSimple();

  const insertCol = cols.get(COL.insert);
  if (!insertCol) throw new NotSimple();
  const ir = new StrictReader(c, insertCol[0], insertCol[0] + insertCol[1]);
  let falses = 0;
  for (let run = 0; ir.o < ir.end; run++) {
    const len = ir.uleb();
    if (run % 2 === 1 && len > 0) throw new NotSimple(); // an insert
    falses += len;
  }
  if (falses !== n) throw new NotSimple();

  if (ulebColumn(c, cols.get(COL.action), n).some((a) => a !== ACTION_SET)) throw new NotSimple();
  const meta = ulebColumn(c, cols.get(COL.valMeta), n);
  const raw = cols.get(COL.valRaw) ?? [off, 0];
  let vo = raw[0];
  const values: Uint8Array[] = [];
  for (const m of meta) {
    if (m % 16 !== VALUE_BYTES) throw new NotSimple();
    const len = Math.floor(m / 16);
    if (vo + len > raw[0] + raw[1]) throw new NotSimple();
    values.push(c.slice(vo, vo + len));
    vo += len;
  }
  if (vo !== raw[0] + raw[1]) throw new NotSimple();

  const predNum = ulebColumn(c, cols.get(COL.predNum), n);
  const preds = predNum.reduce((a, x) => a + x, 0);
  if (preds > 100_000) throw new NotSimple();
  let predActor: number[] = [];
  let predCtr: number[] = [];
  if (preds > 0 || cols.has(COL.predActor) || cols.has(COL.predCtr)) {
    predActor = ulebColumn(c, cols.get(COL.predActor), preds);
    const pc = cols.get(COL.predCtr);
    if (!pc) throw new NotSimple();
    const pr = new StrictReader(c, pc[0], pc[0] + pc[1]);
    let acc = 0;
    const deltas = rle(pr, preds, () => pr.sleb());
    predCtr = deltas.map((d) => {
      if (d === null) throw new NotSimple();
      acc += d;
      if (!Number.isSafeInteger(acc) || acc < 1 || acc > MAX_COUNTER) throw new NotSimple();
      return acc;
    });
    if (predActor.some((a) => a >= actors.length)) throw new NotSimple();
  }
  let p = 0;
  const ops = keys.map((key, i) => {
    const pred: string[] = [];
    for (let j = 0; j < predNum[i]!; j++, p++) {
      // Predecessors in Automerge's order (counter, then actor), each once.
      if (j > 0 && (predCtr[p - 1]! > predCtr[p]! || (predCtr[p - 1] === predCtr[p] && actors[predActor[p - 1]!]! >= actors[predActor[p]!]!))) throw new NotSimple();
      pred.push(`${predCtr[p]}@${actors[predActor[p]!]}`);
    }
    return { action: 'set' as const, obj: '_root' as const, key, value: values[i]!, pred };
  });
  return { actor: actors[0]!, author: null, seq, startOp, time, message, deps, hash: digest.toString('hex'), ops };
}
