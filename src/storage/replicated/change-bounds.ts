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
