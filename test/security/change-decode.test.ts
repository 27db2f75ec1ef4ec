// Issue 15 F15: Automerge's decodeChange hands each byte of a value to JavaScript one at a time, so a
// flood of 16 KiB trial records stalled a victim for seconds in decoding alone. Trial shard changes are
// now decoded by change-bounds.ts `decodeRootBytesChange` (values copied whole); anything else falls
// back to Automerge. The fast path must only ever agree with Automerge: on honest changes of every
// shape, on changes it must leave to Automerge, and on thousands of mutated changes (re-checksummed, so
// the structure is what gets tested) it either declines or returns exactly what Automerge decodes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as A from '@automerge/automerge';
import { decodeRootBytesChange, countChangeRows } from '../../src/storage/replicated/change-bounds.js';
import { decodeChanges, LIMITS } from '../../src/storage/replicated/schema.js';
import { uleb } from '../fixtures/attacker.js';
import { rng } from '../fixtures/rng.js';

/** Automerge's decoding with values as Uint8Array (it gives them as arrays of numbers). */
function automerge(c: Uint8Array): unknown {
  const d = A.decodeChange(c) as unknown as Record<string, unknown> & { ops: Record<string, unknown>[] };
  return {
    actor: d['actor'],
    seq: d['seq'],
    startOp: d['startOp'],
    time: d['time'],
    message: d['message'],
    deps: d['deps'],
    hash: d['hash'],
    ops: d.ops.map((op) => ({ ...op, value: op['value'] instanceof Uint8Array ? op['value'] : Uint8Array.from(op['value'] as number[]) })),
  };
}

function fast(c: Uint8Array): unknown {
  const d = decodeRootBytesChange(c);
  if (!d) return null;
  const { author, ...rest } = d;
  assert.equal(author, null);
  return rest;
}

/** A change chunk around `body` (type 1) with a correct checksum. */
function chunk(body: Uint8Array): Uint8Array {
  const rest = Uint8Array.from([1, ...uleb(body.byteLength), ...body]);
  const sum = createHash('sha256').update(rest).digest().subarray(0, 4);
  return Uint8Array.from([0x85, 0x6f, 0x4a, 0x83, ...sum, ...rest]);
}

/** The body of a change chunk. */
function bodyOf(c: Uint8Array): Uint8Array {
  let o = 9;
  while (c[o]! & 0x80) o++;
  return c.subarray(o + 1);
}

/** Honest shard-like changes: several actors, merges, values of many sizes, keys written again (predecessors). */
function honestChanges(seed: number): Uint8Array[] {
  const rand = rng(seed);
  const docs = [0, 1, 2].map(() => A.getBackend(A.init<never>()));
  const out: Uint8Array[] = [];
  const sizes = [0, 1, 15, 16, 127, 128, 300, 2000];
  for (let step = 0; step < 40; step++) {
    const i = Math.floor(rand() * docs.length);
    const h = docs[i]!;
    const puts = 1 + Math.floor(rand() * (rand() < 0.1 ? 40 : 4));
    for (let k = 0; k < puts; k++) {
      const size = rand() < 0.02 ? 16 * 1024 : sizes[Math.floor(rand() * sizes.length)]!;
      const v = new Uint8Array(size);
      for (let j = 0; j < Math.min(size, 64); j++) v[j] = Math.floor(rand() * 256);
      h.put('_root', `peer${Math.floor(rand() * 3)}:${Math.floor(rand() * 12)}`, v, 'bytes');
    }
    const hash = rand() < 0.2 ? h.commit(rand() < 0.5 ? 'message é' : '', Math.floor(rand() * 2 ** 40) - 2 ** 39) : h.commit();
    if (hash === null) continue;
    const c = h.getLastLocalChange()!;
    out.push(c);
    // Others take it sometimes: later changes have predecessors by other actors and several deps.
    for (const [j, other] of docs.entries()) if (j !== i && rand() < 0.5) other.applyChanges([c]);
  }
  return out;
}

describe('decoding trial shard changes without Automerge (issue 15 F15)', () => {
  it('agrees with Automerge on every honest shard change, and each passes the bounds check', () => {
    let n = 0;
    for (let seed = 1; seed <= 12; seed++) {
      for (const c of honestChanges(seed)) {
        countChangeRows(c, LIMITS.opsPerChange);
        const got = fast(c);
        assert.ok(got, `seed ${seed}: an honest shard change was left to Automerge`);
        assert.deepEqual(got, automerge(c));
        n++;
      }
    }
    assert.ok(n > 300, `${n} changes compared`);
  });

  it('leaves every other kind of change to Automerge (and decodeChanges still decodes them)', () => {
    const h = A.getBackend(A.init<never>());
    let map = '';
    const cases: [string, () => void][] = [
      ['a string value', () => h.put('_root', 'k', 'text')],
      ['a number', () => h.put('_root', 'k', 5)],
      ['a counter', () => h.put('_root', 'c', 1, 'counter')],
      ['an increment', () => h.increment('_root', 'c', 2)],
      ['a nested map', () => void (map = h.putObject('_root', 'm', {}))],
      ['a write inside a map', () => h.put(map, 'x', new Uint8Array([1]), 'bytes')],
      ['a delete', () => h.delete('_root', 'k')],
      ['a list insert', () => h.insert(h.putObject('_root', 'l', []), 0, new Uint8Array([1]), 'bytes')],
      ['bytes beside a string', () => (h.put('_root', 'a', new Uint8Array([1]), 'bytes'), h.put('_root', 'b', 'x'))],
    ];
    for (const [what, write] of cases) {
      write();
      h.commit();
      const c = h.getLastLocalChange()!;
      assert.equal(decodeRootBytesChange(c), null, `${what}: the fast path declines`);
      assert.deepEqual(decodeChanges([c])[0], A.decodeChange(c), `${what}: decodeChanges gives Automerge's decoding`);
    }
    // A bad checksum, a compressed chunk, trailing bytes: declined too.
    const good = honestChanges(99)[0]!;
    const badSum = good.slice();
    badSum[5]! ^= 1;
    assert.equal(decodeRootBytesChange(badSum), null);
    assert.equal(decodeRootBytesChange(Uint8Array.from([...good, 0])), null);
    assert.equal(decodeRootBytesChange(A.getBackend(A.load(A.save(A.init()))).save()), null);
  });

  it('on 20,000 mutated changes (checksums made good) declines or returns exactly what Automerge decodes', () => {
    const rand = rng(4242);
    const bases = [1, 2, 3].flatMap((s) => honestChanges(s)).filter((c) => c.byteLength < 4096);
    let agreed = 0;
    for (let i = 0; i < 20_000; i++) {
      const body = [...bodyOf(bases[Math.floor(rand() * bases.length)]!)];
      for (let m = 1 + Math.floor(rand() * 3); m > 0; m--) {
        const at = Math.floor(rand() * body.length);
        const r = rand();
        if (r < 0.5) body[at] = Math.floor(rand() * 256);
        else if (r < 0.7) body[at] = body[at]! ^ (1 << Math.floor(rand() * 8));
        else if (r < 0.85) body.splice(at, 1);
        else body.splice(at, 0, Math.floor(rand() * 256));
      }
      const c = chunk(Uint8Array.from(body));
      let got: unknown;
      try {
        countChangeRows(c, LIMITS.opsPerChange);
        got = fast(c);
      } catch {
        continue; // refused by the bounds check before any decoding
      }
      if (got === null) continue;
      let want: unknown;
      try {
        want = automerge(c);
      } catch (e) {
        assert.fail(`case ${i}: the fast path decoded a change Automerge refuses (${(e as Error).message}): ${Buffer.from(c).toString('hex')}`);
      }
      assert.deepEqual(got, want, `case ${i}: ${Buffer.from(c).toString('hex')}`);
      agreed++;
    }
    console.log(`# mutated changes the fast path decoded (all as Automerge does): ${agreed} of 20000`);
    assert.ok(agreed > 100, 'some mutations stay decodable');
  });

});
