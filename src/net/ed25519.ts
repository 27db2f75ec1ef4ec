/**
 * Ed25519 signing and verification through cached Node key objects. @libp2p/crypto builds a Node
 * key object from JWK on every `sign` and every `verify` (measured: about a third of the cost of a
 * gossipsub signature check and half of a signing), and gossipsub signs every message it publishes
 * and checks every message it receives (StrictSign). This module replaces those two methods on
 * @libp2p/crypto's Ed25519 key classes by the same Node calls with the key object built once per key
 * (bounded cache): the same keys, the same algorithm, the same answers, only without the rebuild.
 * Imported for its effect by the modules that start peers; `installed` says whether it applied.
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { generateKeyPairSync } from 'node:crypto';
import { privateKeyFromRaw } from '@libp2p/crypto/keys';

const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
const MAX_KEYS = 4096;
const publicKeys = new Map<string, KeyObject>();
const privateKeys = new WeakMap<Uint8Array, KeyObject>();

function publicKeyObject(raw: Uint8Array): KeyObject {
  const id = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64');
  let k = publicKeys.get(id);
  if (!k) {
    k = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
    if (publicKeys.size >= MAX_KEYS) publicKeys.clear();
    publicKeys.set(id, k);
  }
  return k;
}

function privateKeyObject(raw: Uint8Array): KeyObject {
  let k = privateKeys.get(raw);
  if (!k) {
    k = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
    privateKeys.set(raw, k);
  }
  return k;
}

const asBytes = (m: Uint8Array | { subarray(): Uint8Array }): Uint8Array => (m instanceof Uint8Array ? m : m.subarray());

interface Ed25519Proto {
  sign(this: { raw: Uint8Array }, message: Uint8Array, options?: { signal?: AbortSignal }): Uint8Array;
}
interface Ed25519PublicProto {
  verify(this: { raw: Uint8Array }, data: Uint8Array, sig: Uint8Array, options?: { signal?: AbortSignal }): boolean;
}

function install(): boolean {
  // A throwaway key gives us the classes (they are not exported by name).
  const seed = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  const probe = privateKeyFromRaw(Buffer.concat([seed, Buffer.alloc(32)]));
  if (probe.type !== 'Ed25519') return false;
  const privProto = Object.getPrototypeOf(probe) as Ed25519Proto;
  const pubProto = Object.getPrototypeOf(probe.publicKey) as Ed25519PublicProto;
  if (typeof privProto.sign !== 'function' || typeof pubProto.verify !== 'function') return false;
  privProto.sign = function (message, options) {
    options?.signal?.throwIfAborted();
    return nodeSign(null, asBytes(message), privateKeyObject(this.raw));
  };
  pubProto.verify = function (data, sig, options) {
    options?.signal?.throwIfAborted();
    if (!(sig instanceof Uint8Array) || sig.byteLength !== 64) throw new TypeError('"sig" must be 64 bytes in length.');
    return nodeVerify(null, asBytes(data), publicKeyObject(this.raw), sig);
  };
  return true;
}

export const installed = install();
