// Issue 8 (load time of a 100,000-trial replica): records that repeat a param's distribution field for
// field share one parsed distribution, found without building a key for each (schema.ts
// sharedDistribution). What must hold: equal distributions are one object, any difference (a field, a
// choice, key order aside) gives the record its own, and an invalid distribution is refused as before,
// even right after a valid one of the same param name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import { decodeTrial, seal, type TrialRecord } from '../../src/storage/replicated/schema.js';

test('equal distributions decode to one shared object; different or invalid ones do not', async () => {
  const key = await generateKeyPair('Ed25519');
  const owner = peerIdFromPrivateKey(key as never).toString();
  let q = 0;
  const record = (d: Record<string, unknown>, p: Record<string, unknown>): Uint8Array => {
    const seq = q++;
    const rec = { k: 'trial', st: 's0123456789abcdef01234567', id: `${owner}:${seq}`, o: owner, q: seq, v: 0, s: 'RUNNING', p, d, vals: null, iv: [], ua: {}, sa: {}, t0: 1, t1: null, claim: null, c: seq, ca: 1 };
    return seal(key as never, rec as unknown as TrialRecord);
  };
  const float = { type: 'float', low: 0, high: 1, log: false, step: null };
  const a = decodeTrial(record({ x: float }, { x: 0.5 }));
  const b = decodeTrial(record({ x: { ...float } }, { x: 0.25 }));
  assert.equal(a.d['x'], b.d['x'], 'the same distribution twice: one object');
  const reordered = decodeTrial(record({ x: { step: null, log: false, high: 1, low: 0, type: 'float' } }, { x: 0.75 }));
  assert.deepEqual(reordered.d['x'], a.d['x'], 'key order aside, the same distribution');
  const wider = decodeTrial(record({ x: { ...float, high: 2 } }, { x: 1.5 }));
  assert.notEqual(wider.d['x'], a.d['x']);
  assert.equal((wider.d['x'] as { high: number }).high, 2, 'a different bound is its own distribution');
  const cat = { type: 'categorical', choices: ['a', 'b'] };
  const c1 = decodeTrial(record({ x: cat }, { x: 'a' }));
  const c2 = decodeTrial(record({ x: { type: 'categorical', choices: ['a', 'c'] } }, { x: 'c' }));
  assert.deepEqual((c1.d['x'] as { choices: readonly unknown[] }).choices, ['a', 'b']);
  assert.deepEqual((c2.d['x'] as { choices: readonly unknown[] }).choices, ['a', 'c'], 'a different choice is its own distribution');
  const c3 = decodeTrial(record({ x: { type: 'categorical', choices: ['a', 'c'] } }, { x: 'a' }));
  assert.equal(c3.d['x'], c2.d['x'], 'equal choices: shared');
  // Invalid right after a valid one of the same name: still refused, naming the param.
  decodeTrial(record({ x: float }, { x: 0.5 }));
  assert.throws(() => decodeTrial(record({ x: { ...float, low: 2 } }, { x: 0.5 })), /distribution of x is invalid/);
  // Unknown fields are ignored by the parser, as before; one holding an object is never matched field for field.
  assert.deepEqual(decodeTrial(record({ x: { ...float, extra: { nested: 1 } } }, { x: 0.5 })).d['x'], a.d['x']);
  assert.throws(() => decodeTrial(record({ x: { ...float, low: 'zero' } }, { x: 0.5 })), /distribution of x is invalid/);
});
