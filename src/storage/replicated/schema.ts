/**
 * The replicated study document: its schema and its merge rules, in one place. Everything here is a
 * function of (document, records, bytes) with no I/O; that lives in persist.ts (level) and src/net (libp2p).
 *
 * ## Shape (format 2: one small study document plus many shard documents per study)
 * ```
 * study document  { meta: bytes, trials: {} (stays empty), attrs: { ['u:'|'s:' + key]: bytes } }
 * shard document  { [trialId]: bytes }    one per (owner, bucket): trials owner:seq, seq / 64 = bucket
 * ```
 * The study document holds the signed StudyMeta (the genesis change) and the study attrs, written
 * rarely. Trials live in shards of `SHARD_TRIALS` trials of one owner, so a change (and its apply,
 * and the anti-entropy that compares replicas) costs O(shard), not O(study): Automerge 3.5 applies
 * one change in time proportional to the document (9 ms at 10,000 trials, 0.12 ms at 64). Only the
 * owner writes its shards; a shard whose bucket is full and whose trials are all finished is sealed:
 * compacted on disk with its final records stored beside it, and its Automerge document dropped from
 * memory (loaded again only to serve a peer that holds part of it).
 * A trial is ONE bytes value (msgpack) rewritten whole by a coarse change per trial event: nested maps
 * or one change per field made Automerge 3.5 too slow and too big (see issue 3's measurements), and
 * JS strings would become collaborative text. A value is `[0x01][64-byte Ed25519 signature][payload]`;
 * the signature is by the libp2p key of the writer, whose peer id (which embeds the public key) is
 * the owner part of the trial id (`<peerId>:<seq>`). So nobody can forge another peer's trial: the
 * check does not trust the Automerge actor (which is random per process start) at all.
 *
 * ## Merge rules (enforced on every incoming change, gossip and sync paths alike, by `inspectChanges`)
 * - Shard documents: only `set`s of bytes at the root, under trial ids of the shard's owner and
 *   bucket, holding records signed by that owner (`inspectShardChanges`). The study document takes
 *   no trial writes.
 * - Root keys are written only by the genesis change (meta + the two maps), once; the meta must be
 *   signed by its creator and hash to the study id, and the genesis must be exactly the change that
 *   meta determines (actor derived from it, time 0), so nobody can give a joiner maps of their own.
 *   No other change may touch the root.
 * - A trial key holds a record signed by the owner named in the key, for this study and this key.
 * - Each record carries a per-trial version `v`; a new record must have a higher `v` than the one
 *   it replaces, its state may only move forward (WAITING -> RUNNING -> COMPLETE | PRUNED | FAIL),
 *   and once finished the state and values never change (attrs may still be added by the owner).
 * - A study attr record must be newer, by (time, writer id), than the one it replaces. System attrs
 *   (`s:` keys: the sampler and pruner settings) are written by the study's creator only; a member's
 *   far-future record cannot take them over, and one stored before this rule is ignored on read.
 * - Trial values: none, or one per direction of the study (a COMPLETE trial needs them).
 * - Nothing is ever deleted; no other object, op type or nesting is allowed. A change is at most
 *   `LIMITS.changeBytes` and `LIMITS.opsPerChange` operations, both checked before it is decoded
 *   (operations counted from the column run lengths); a record at most `LIMITS.recordBytes`.
 * - A change breaking any rule is rejected whole (the message with it too) and counted by reason.
 * - Reading: if concurrent writes left several values under a key (only possible through replays
 *   of the owner's own older records), the view takes the valid record with the highest `v`, so the
 *   outcome does not depend on Automerge's actor-id tie-break.
 *
 * ## Display numbers (rules in view.ts)
 * A trial records at creation a claim `c` = max(now in ms, highest claim its replica has seen + 1), a
 * hybrid logical clock, and `ca`, its creation time. The number shown is the trial's rank in the
 * order (c, trialId) among the trials shown (a claim of an enqueued trial copies the enqueued trial's
 * c and sorts right after its id), so it is unique, dense, and the same on every replica that holds
 * the same trials. The race: a trial created elsewhere just before one of ours, still in flight when
 * ours was created, sorts first; when it arrives (within one gossip latency) ours moves up by one, and
 * so does every trial shown after it. After a partition heals the two sides interleave by creation
 * time, and the replica logs which numbers changed.
 *
 * ## Enqueued trials (WAITING)
 * `enqueueTrial` writes a WAITING record owned by the enqueuing peer. Claiming it never writes the
 * enqueuer's record (only owners write): the claimer creates its own RUNNING trial with
 * `claim: <waiting id>`; a WAITING trial with a known claim is hidden from reads and its claim
 * takes over its display number. Peers only claim what no known trial has claimed, so within a
 * connected swarm a trial runs once (two peers claiming in the same ~10 ms gossip window can both
 * run it); on both sides of a partition each side may claim it, and it then runs once per side:
 * both results are kept (nothing lost), the second claim shows as a separate trial.
 *
 * ## Stale trials (derived, never written)
 * Liveness is gossiped, not stored. A RUNNING trial whose owner has been silent longer than the grace
 * period (counted from when this replica first saw the trial, or from its own start) reads as FAIL
 * with `systemAttrs.failReason` and `stale: true`; the verdict is kept until the owner writes a
 * finished state, which then stands (COMPLETE included). An owner that restarts fails its own
 * interrupted trials for real, except those marked `systemAttrs.askedByCli` (handed out by
 * `peertune ask` to be told by a later process).
 *
 * ## Global budget (`maxTrials`) during a partition
 * The budget counts COMPLETE + PRUNED trials in the local replica plus this peer's own RUNNING ones
 * (Study.countTowardsBudget: other owners' RUNNING trials cost nothing to claim, issue 15 F8). With k groups that cannot reach each other, each group stops at `maxTrials` as it sees it:
 * the swarm can overshoot by at most (k - 1) * (maxTrials - trials known to all groups at the split),
 * plus, even when connected, by up to (peers x nJobs - 1) trials started within one gossip latency.
 */
import { createHash, createPublicKey, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import * as A from '@automerge/automerge';
import { peerIdFromString } from '@libp2p/peer-id';
import type { PrivateKey, PublicKey } from '@libp2p/interface';
import { parseDistribution, type Distribution, type ParamValue } from '../../distributions.js';
import { TRIAL_STATES, isFinished, type StudyDirection, type TrialState } from '../storage.js';
import { asObject, pack, unpackUntrusted, WireError } from '../../net/wire.js';
import { ChangeBoundsError, countChangeRows, decodeRootBytesChange } from './change-bounds.js';

export interface StudyDoc {
  meta?: Uint8Array;
  trials?: Record<string, Uint8Array>;
  attrs?: Record<string, Uint8Array>;
}

export interface StudyMeta {
  k: 'meta';
  id: string;
  name: string;
  directions: StudyDirection[];
  creator: string;
  createdAt: number;
}

export interface TrialRecord {
  k: 'trial';
  st: string; // study id
  id: string; // trial id, `${owner}:${seq}`
  o: string; // owner peer id
  q: number; // owner-local sequence
  v: number; // per-trial version, strictly increasing with every rewrite
  s: TrialState;
  p: Record<string, ParamValue>;
  d: Record<string, Distribution>;
  vals: number[] | null;
  iv: IntermediateList; // intermediate values: [step, value] pairs, packed once decoded (below)
  ua: Record<string, unknown>;
  sa: Record<string, unknown>;
  t0: number | null; // startedAt, ms since epoch
  t1: number | null; // completedAt
  claim: string | null; // the WAITING trial this one runs (enqueued trials)
  c: number; // claimed clock at creation, ms (hybrid logical); numbers rank by it (see "Display numbers" above)
  ca: number; // creation time, ms (a claim copies the claimed trial's): the first tie-break of c
}

/**
 * A trial's intermediate values. On the wire, and in a record this peer is still writing, a list of
 * [step, value] pairs; in a record decoded from bytes (gossip, catch-up, the disk), one flat list of
 * numbers step, value, step, value... (V8 keeps a list of numbers as unboxed doubles in the JS heap).
 * The signature covers the bytes, not this object, so the form in memory is free: in a replica of
 * 10,000 trials with 20 values each, the pairs were 200,000 two-element arrays and as many boxed
 * numbers, about 15 MB of a 56 MB heap; packed, they take 3.2 MB (issue 8, RSS). A Float64Array
 * would take as much plus two objects and a separate allocation outside the heap per trial, which
 * left the C heap fragmented after a load.
 */
export type IntermediateList = [number, number][] | number[];

/** Whether the values are the packed flat list (an empty list reads the same either way). */
export function ivPacked(iv: IntermediateList): iv is number[] {
  return iv.length > 0 && typeof iv[0] === 'number';
}

/** The values as [step, value] pairs (a new list when packed). */
export function ivPairs(iv: IntermediateList): [number, number][] {
  if (!ivPacked(iv)) return iv as [number, number][];
  const out: [number, number][] = [];
  for (let i = 0; i < iv.length; i += 2) out.push([iv[i]!, iv[i + 1]!]);
  return out;
}

/** How many intermediate values. */
export function ivCount(iv: IntermediateList): number {
  return ivPacked(iv) ? iv.length / 2 : iv.length;
}

/** Whether a value was reported at `step`. */
export function ivHasStep(iv: IntermediateList, step: number): boolean {
  if (!ivPacked(iv)) return (iv as [number, number][]).some((e) => e[0] === step);
  for (let i = 0; i < iv.length; i += 2) if (iv[i] === step) return true;
  return false;
}

/** Packs checked pairs (an empty list stays as it is). */
function packIv(pairs: [number, number][]): IntermediateList {
  if (pairs.length === 0) return pairs;
  const out: number[] = [];
  for (const e of pairs) out.push(e[0], e[1]);
  return out;
}

/** The record as it is encoded and signed: intermediate values as pairs. */
export function wireRecord(r: TrialRecord): TrialRecord {
  return ivPacked(r.iv) ? { ...r, iv: ivPairs(r.iv) } : r;
}

export interface AttrRecord {
  k: 'attr';
  st: string;
  key: string; // 'u:<name>' or 's:<name>'
  val: unknown;
  by: string;
  ts: number;
}

/** Limits for decoded values: a record is small, a whole network message somewhat larger. */
export const LIMITS = {
  recordBytes: 128 * 1024,
  /** Checked before decoding: decoding costs ~5 µs per operation, so size bounds the work a peer can force. */
  changeBytes: 160 * 1024,
  /** Honest changes hold one op per record written (a flush splits at recordBytes: under 1,000). */
  opsPerChange: 2_000,
  /** Operations in all the changes of one gossip message or sync piece, counted before decoding. */
  opsPerMessage: 10_000,
  nameLength: 256,
  paramsPerTrial: 1_000,
  intermediatePerTrial: 100_000,
};

const STATE_RANK: Record<TrialState, number> = { WAITING: 0, RUNNING: 1, COMPLETE: 2, PRUNED: 2, FAIL: 2 };
const ENVELOPE = 0x01;
const SIG = 64;

export class RecordError extends WireError {
  override name = 'RecordError';
}

// ---------------------------------------------------------------- identities and signatures

const pubKeys = new Map<string, PublicKey>();
/** Node key objects per signer: @libp2p/crypto's verify re-imports the key from JWK on every call. */
const keyObjects = new Map<string, KeyObject>();
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** Verifies an Ed25519 signature by the key embedded in `peerId`. */
function verifyBy(peerId: string, body: Uint8Array, sig: Uint8Array): boolean {
  let ko = keyObjects.get(peerId);
  if (!ko) {
    ko = createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, publicKeyOf(peerId).raw]), format: 'der', type: 'spki' });
    if (keyObjects.size > 10_000) keyObjects.clear();
    keyObjects.set(peerId, ko);
  }
  try {
    return cryptoVerify(null, body, ko, sig);
  } catch {
    return false;
  }
}

/** The Ed25519 public key embedded in a peer id (cached); throws for ids that embed none. */
export function publicKeyOf(peerId: string): PublicKey {
  let k = pubKeys.get(peerId);
  if (!k) {
    let key: PublicKey | undefined;
    try {
      key = peerIdFromString(peerId).publicKey;
    } catch {
      throw new RecordError('bad-owner', `"${peerId.slice(0, 80)}" is not a peer id`);
    }
    if (!key || key.type !== 'Ed25519') throw new RecordError('bad-owner', `peer id ${peerId.slice(0, 80)} does not embed an Ed25519 key`);
    k = key;
    if (pubKeys.size > 10_000) pubKeys.clear();
    pubKeys.set(peerId, k);
  }
  return k;
}

export function seal(key: PrivateKey, payload: object): Uint8Array {
  // A trial record decoded here holds its intermediate values packed: they are signed as pairs.
  const body = pack((payload as { k?: unknown }).k === 'trial' ? wireRecord(payload as TrialRecord) : payload);
  const sig = key.sign(body) as Uint8Array;
  const out = new Uint8Array(1 + SIG + body.byteLength);
  out[0] = ENVELOPE;
  out.set(sig, 1);
  out.set(body, 1 + SIG);
  return out;
}

/** Splits and decodes a signed value, verifying the signature against `signer` (a peer id). */
function open(bytes: unknown, signerOf: (payload: Record<string, unknown>) => string, verify = true): Record<string, unknown> {
  if (!(bytes instanceof Uint8Array)) throw new RecordError('not-bytes', 'a stored value is not bytes');
  if (bytes.byteLength > LIMITS.recordBytes) throw new RecordError('too-large', `a record of ${bytes.byteLength} bytes exceeds ${LIMITS.recordBytes}`);
  if (bytes.byteLength <= 1 + SIG || bytes[0] !== ENVELOPE) throw new RecordError('bad-envelope', 'a record has no valid envelope');
  const body = bytes.subarray(1 + SIG);
  const payload = asObject(unpackUntrusted(body, { maxBytes: LIMITS.recordBytes, maxDepth: 12, maxNodes: 200_000 }), 'record');
  if (verify) {
    const signer = signerOf(payload);
    if (!verifyBy(signer, body, bytes.subarray(1, 1 + SIG))) throw new RecordError('bad-signature', `a record's signature does not verify for ${signer}`);
  }
  return payload;
}

// ---------------------------------------------------------------- study meta

export function studyIdFor(creator: string, name: string, createdAt: number): string {
  return 's' + createHash('sha256').update(`${creator}\0${name}\0${createdAt}`).digest('hex').slice(0, 24);
}

export function decodeMeta(bytes: unknown, verify = true): StudyMeta {
  const p = open(bytes, (x) => String(x['creator']), verify);
  const m = p as unknown as StudyMeta;
  if (m.k !== 'meta') throw new RecordError('schema', 'meta record has the wrong kind');
  if (typeof m.name !== 'string' || m.name.length === 0 || m.name.length > LIMITS.nameLength) throw new RecordError('schema', 'meta.name is not a valid study name');
  if (!Array.isArray(m.directions) || m.directions.length === 0 || m.directions.length > 16 || !m.directions.every((d) => d === 'minimize' || d === 'maximize')) {
    throw new RecordError('schema', 'meta.directions is not a list of minimize/maximize');
  }
  // Within the range of a JS Date: a study dated 1e300 would make every date formatting of it throw.
  if (typeof m.createdAt !== 'number' || !Number.isFinite(m.createdAt) || Math.abs(m.createdAt) > 8.64e15) throw new RecordError('schema', 'meta.createdAt is not a time');
  if (typeof m.creator !== 'string') throw new RecordError('schema', 'meta.creator is not a peer id');
  if (m.id !== studyIdFor(m.creator, m.name, m.createdAt)) throw new RecordError('bad-study-id', 'meta.id does not match its creator, name and time');
  return m;
}

// ---------------------------------------------------------------- trial records

function ownerOf(trialId: string): string {
  const i = trialId.lastIndexOf(':');
  if (i <= 0) throw new RecordError('schema', `trial id "${trialId.slice(0, 100)}" is not owner:seq`);
  return trialId.slice(0, i);
}

function isParamValue(v: unknown): v is ParamValue {
  return v === null || typeof v === 'string' || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v));
}

function plainMap(v: unknown, what: string): Record<string, unknown> {
  const o = asObject(v, what);
  return o;
}

/**
 * Every trial of a study repeats the same few distributions: records share one parsed object per
 * distinct one (memory of a large replica, and parsing on every merge). Treated as immutable.
 */
const distributions = new Map<string, Distribution>();

/** Per param name, the raw distribution last parsed and its shared object (most records repeat it field for field). */
const lastDistribution = new Map<string, { raw: Record<string, unknown>; dist: Distribution }>();

/** Whether two raw distributions have the same fields with the same values (scalars, or lists of scalars). */
function sameFields(a: Record<string, unknown>, b: Record<string, unknown>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    const x = a[k];
    const y = b[k];
    if (Object.is(x, y) && (x === null || typeof x !== 'object')) continue;
    if (Array.isArray(x) && Array.isArray(y) && x.length === y.length && x.every((v, i) => (v === null || typeof v !== 'object') && Object.is(v, y[i]))) continue;
    return false;
  }
  return true;
}

/** About how many bytes a raw distribution holds (what keeping it costs); Infinity past one level of lists. */
function rawSize(o: Record<string, unknown>): number {
  let n = 0;
  const one = (v: unknown): number => (typeof v === 'string' ? v.length + 8 : v === null || typeof v !== 'object' ? 8 : Number.POSITIVE_INFINITY);
  for (const k of Object.keys(o)) {
    const v = o[k];
    n += k.length + (Array.isArray(v) ? v.reduce((m: number, x: unknown) => m + one(x), 8) : one(v));
  }
  return n;
}

function sharedDistribution(name: string, raw: unknown): Distribution {
  // Loading 100,000 trials of 10 params, a JSON key per distribution was an eighth of the load.
  const last = lastDistribution.get(name);
  if (last && raw !== null && typeof raw === 'object' && !Array.isArray(raw) && sameFields(last.raw, raw as Record<string, unknown>)) return last.dist;
  const d = distributionByKey(name, raw);
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && rawSize(raw as Record<string, unknown>) <= 4096) {
    if (lastDistribution.size >= 1024) lastDistribution.clear();
    lastDistribution.set(name, { raw: raw as Record<string, unknown>, dist: d });
  }
  return d;
}

function distributionByKey(name: string, raw: unknown): Distribution {
  const key = JSON.stringify(raw);
  const known = key.length <= 4096 ? distributions.get(key) : undefined;
  if (known) return known;
  let d: Distribution;
  try {
    d = parseDistribution(raw);
  } catch {
    throw new RecordError('schema', `distribution of ${name.slice(0, 50)} is invalid`);
  }
  if (key.length <= 4096) {
    if (distributions.size >= 4096) distributions.clear();
    distributions.set(key, d);
  }
  return d;
}

/** Decodes and checks a trial record (signature by the owner in its id unless `verify` is false). */
/**
 * msgpackr's native decoder returns a record's strings as slices of one string made of the whole
 * record body, so each kept string (an id, an owner, a state) kept about 700 bytes alive per trial
 * (6.5 MB in a 10,000-trial replica). The strings a replica keeps are copied out: the few that
 * repeat (owners, study ids, states, categorical values) into one shared copy each.
 */
const internedStrings = new Map<string, string>();

function ownString(s: string): string {
  // A property key is stored as a flat, internalized copy of the string.
  return Object.keys({ [s]: 0 })[0]!;
}

function shared(s: string): string {
  let x = internedStrings.get(s);
  if (x === undefined) {
    if (internedStrings.size >= 65_536) internedStrings.clear();
    x = ownString(s);
    internedStrings.set(x, x);
  }
  return x;
}

function ownStrings(o: Record<string, unknown>): void {
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (typeof v === 'string') o[k] = v.length <= 64 ? shared(v) : ownString(v);
  }
}

export function decodeTrial(bytes: unknown, verify = true): TrialRecord {
  const p = open(bytes, (x) => ownerOf(String(x['id'])), verify);
  const r = p as unknown as TrialRecord;
  if (r.k !== 'trial') throw new RecordError('schema', 'trial record has the wrong kind');
  if (typeof r.id !== 'string' || typeof r.st !== 'string') throw new RecordError('schema', 'trial record lacks id or study');
  const owner = ownerOf(r.id);
  if (r.o !== owner || !Number.isSafeInteger(r.q) || r.q < 0 || r.id !== `${owner}:${r.q}`) throw new RecordError('schema', 'trial record id, owner and seq disagree');
  if (!Number.isSafeInteger(r.v) || r.v < 0) throw new RecordError('schema', 'trial record version is not a non-negative integer');
  if (!TRIAL_STATES.includes(r.s)) throw new RecordError('schema', `trial state ${String(r.s).slice(0, 20)} is unknown`);
  const params = plainMap(r.p, 'params');
  const dists = plainMap(r.d, 'distributions');
  if (Object.keys(params).length > LIMITS.paramsPerTrial) throw new RecordError('schema', 'too many params');
  for (const [k, v] of Object.entries(params)) {
    if (!isParamValue(v)) throw new RecordError('schema', `param ${k.slice(0, 50)} has a bad value`);
    if (!Object.prototype.hasOwnProperty.call(dists, k)) throw new RecordError('schema', `param ${k.slice(0, 50)} has no distribution`);
  }
  for (const [k, d] of Object.entries(dists)) dists[k] = sharedDistribution(k, d);
  if (r.vals !== null && (!Array.isArray(r.vals) || r.vals.length > 16 || !r.vals.every((x) => typeof x === 'number' && Number.isFinite(x)))) {
    throw new RecordError('schema', 'trial values are not finite numbers');
  }
  // A COMPLETE trial without values would read as best (issue 15 F7); `[]` is no values either.
  if (r.s === 'COMPLETE' && (!r.vals || r.vals.length === 0)) throw new RecordError('no-values', 'a COMPLETE trial has no values');
  if (r.vals !== null && r.vals.length === 0) throw new RecordError('no-values', 'a trial has an empty list of values');
  if (!Array.isArray(r.iv) || r.iv.length > LIMITS.intermediatePerTrial) throw new RecordError('schema', 'intermediate values are not a list');
  for (const e of r.iv) {
    // Any number, NaN and ±Infinity included (Optuna stores a diverged loss as reported).
    if (!Array.isArray(e) || e.length !== 2 || !Number.isSafeInteger(e[0]) || typeof e[1] !== 'number') {
      throw new RecordError('schema', 'an intermediate value is not [step, number]');
    }
  }
  r.iv = packIv(r.iv as [number, number][]);
  plainMap(r.ua, 'userAttrs');
  plainMap(r.sa, 'systemAttrs');
  for (const t of [r.t0, r.t1]) if (t !== null && !(typeof t === 'number' && Number.isFinite(t))) throw new RecordError('schema', 'a trial time is not a number');
  if (r.claim !== null && typeof r.claim !== 'string') throw new RecordError('schema', 'claim is not a trial id');
  if (!Number.isSafeInteger(r.c) || r.c < 0) throw new RecordError('schema', 'trial record has no claimed number');
  if (typeof r.ca !== 'number' || !Number.isFinite(r.ca)) throw new RecordError('schema', 'trial record has no creation time');
  r.k = 'trial';
  r.st = shared(r.st);
  r.o = shared(r.o);
  r.s = shared(r.s) as TrialState;
  r.id = ownString(r.id);
  if (r.claim !== null) r.claim = ownString(r.claim);
  ownStrings(params);
  ownStrings(r.ua);
  ownStrings(r.sa);
  return r;
}

export function decodeAttr(bytes: unknown, verify = true): AttrRecord {
  const p = open(bytes, (x) => String(x['by']), verify);
  const r = p as unknown as AttrRecord;
  if (r.k !== 'attr' || typeof r.key !== 'string' || !/^[us]:/.test(r.key) || typeof r.by !== 'string' || typeof r.ts !== 'number') {
    throw new RecordError('schema', 'attr record is malformed');
  }
  return r;
}

/** Whether `next` may replace `prev` (both owner-signed records of the same trial); else the reason. */
export function forwardReason(prev: TrialRecord | undefined, next: TrialRecord): string | null {
  if (!prev) return null;
  if (next.v <= prev.v) return 'stale-version';
  if (STATE_RANK[next.s] < STATE_RANK[prev.s]) return 'state-backward';
  if (isFinished(prev.s)) {
    if (next.s !== prev.s) return 'finished-final';
    if (JSON.stringify(next.vals) !== JSON.stringify(prev.vals)) return 'finished-final';
  }
  return null;
}

/** Of several values under one trial key (concurrent writes), the valid one with the highest version. */
export function pickRecord(values: Iterable<unknown>): TrialRecord | undefined {
  let best: TrialRecord | undefined;
  for (const v of values) {
    let r: TrialRecord;
    try {
      r = decodeTrial(v, false);
    } catch {
      continue;
    }
    if (!best || r.v > best.v) best = r;
  }
  return best;
}

/** The Automerge backend of a document: reads and writes through it skip the JS materialization. */
export type DocHandle = ReturnType<typeof A.getBackend>;
export const handleOf = (doc: A.Doc<StudyDoc>): DocHandle => A.getBackend(doc);

/** Object ids of the two maps and the meta bytes (null/undefined before the genesis arrived). */
export function docParts(h: DocHandle): DocParts {
  const known = partsOf.get(h);
  if (known) return known;
  const t = h.get('_root', 'trials');
  const a = h.get('_root', 'attrs');
  const m = h.get('_root', 'meta');
  const parts = { trials: typeof t === 'string' ? t : null, attrs: typeof a === 'string' ? a : null, meta: m instanceof Uint8Array ? m : undefined };
  // Once the genesis is in, the root never changes (no other change may write it): remember it,
  // as each root read costs a call into Automerge on every merge and write.
  if (parts.trials && parts.attrs && parts.meta) partsOf.set(h, parts);
  return parts;
}

type DocParts = { trials: string | null; attrs: string | null; meta: Uint8Array | undefined };
const partsOf = new WeakMap<DocHandle, DocParts>();

/**
 * Change hashes known to be in a document. Automerge answers "is this change here" (`hasHeads`,
 * `getChangeByHash`) by building the whole change, tens of microseconds per hash, and gossip asks
 * it for every dependency of every incoming change. A change never leaves a document, so a yes can
 * be remembered; a no is always asked again.
 */
const knownChanges = new WeakMap<DocHandle, Set<string>>();

export function hasChanges(h: DocHandle, hashes: readonly string[]): boolean {
  let known = knownChanges.get(h);
  for (const x of hashes) {
    if (known?.has(x)) continue;
    if (!h.getChangeMetaByHash(x)) return false;
    if (!known) knownChanges.set(h, (known = new Set()));
    markKnown(known, x);
  }
  return true;
}

/** Records hashes just applied to or committed in `h` (so the next `hasChanges` need not ask). */
export function noteChanges(h: DocHandle, hashes: Iterable<string>): void {
  let known = knownChanges.get(h);
  if (!known) knownChanges.set(h, (known = new Set()));
  for (const x of hashes) markKnown(known, x);
}

function markKnown(known: Set<string>, hash: string): void {
  // Bounded: past this, start over (asking Automerge again is slower, never wrong).
  if (known.size >= 200_000) known.clear();
  known.add(hash);
}

/**
 * The current record under a trial key, honouring the highest-version rule when concurrent values
 * exist (`checkConflicts`; reading only the winning value is faster and enough for keys never seen
 * conflicted).
 */
export function readTrial(h: DocHandle, trialsObj: string, trialId: string, checkConflicts = true): { rec: TrialRecord | undefined; conflicted: boolean } {
  if (checkConflicts) {
    const all = h.getAll(trialsObj, trialId);
    if (all.length > 1) return { rec: pickRecord(all.map((x) => x[1])), conflicted: true };
    return { rec: all.length ? pickRecord([all[0]![1]]) : undefined, conflicted: false };
  }
  const v = h.get(trialsObj, trialId);
  return { rec: v === undefined ? undefined : pickRecord([v]), conflicted: false };
}

// ---------------------------------------------------------------- inspecting incoming changes

export interface InspectContext {
  studyId: string;
  /** Format 1 kept trials in the study document; format 2 refuses them there. */
  trialsInStudyDoc?: boolean;
  doc: DocHandle;
  /** The current record of a trial in `doc` (the view's cache). */
  current(trialId: string): TrialRecord | undefined;
}

/**
 * System attrs (`s:` keys: the sampler and pruner a study was created with, and anything else the
 * library keeps there) are settings: only the study's creator may write them. User attrs (`u:`) stay
 * open to every member, as Optuna's `set_user_attr` is.
 */
export function isSetting(key: string): boolean {
  return key.startsWith('s:');
}

/**
 * How far ahead of the receiver's clock a study attr record's time may be (issue 15: last writer wins
 * by time, so a member signing a far-future time would win against every later honest write). Further
 * ahead, the change is refused at merge (`gossip:future-attr`, `sync:future-attr`) until the clock
 * catches up; so an honest write made more than this after a member's write replaces it.
 */
export const MAX_ATTR_AHEAD_MS = 60_000;

/** The creator named in a study's meta bytes (already verified when they were accepted). */
function creatorOf(metaBytes: Uint8Array): string | null {
  try {
    return decodeMeta(metaBytes, false).creator;
  } catch {
    return null;
  }
}

/**
 * The newest attr record under a key (by time, then writer id), as `readAttrs` orders them. For a
 * setting (`isSetting`), only records by `creator` count: a setting written by anyone else (stored
 * before this rule) is ignored, whatever its time. A record dated more than MAX_ATTR_AHEAD_MS ahead of
 * this clock is ignored until then (the key reads as unset if it is the only one).
 */
export function currentAttr(h: DocHandle, attrsObj: string, key: string, creator?: string | null): AttrRecord | undefined {
  let best: AttrRecord | undefined;
  const settingBy = creator !== undefined && isSetting(key) ? creator : undefined;
  let skipped = false;
  // A record dated beyond MAX_ATTR_AHEAD_MS (stored before that rule, or this peer's own) is not read
  // until its time: otherwise this replica's next honest write would be dated after it, and refused.
  const latest = Date.now() + MAX_ATTR_AHEAD_MS;
  for (const [, v] of h.getAll(attrsObj, key)) {
    try {
      const r = decodeAttr(v, false);
      if (settingBy !== undefined && r.by !== settingBy) {
        skipped = true;
        continue;
      }
      if (!(r.ts <= latest)) continue;
      if (!best || r.ts > best.ts || (r.ts === best.ts && r.by > best.by)) best = r;
    } catch {
      /* skipped */
    }
  }
  // A member's record that replaced the creator's (stored before the creator-only rule, or written
  // here by this very peer): the creator's newest record is still in the history (the study document
  // holds few changes: its genesis and attr writes).
  if (!best && skipped && settingBy) best = creatorsNewest(h, attrsObj, key, settingBy);
  return best;
}

function creatorsNewest(h: DocHandle, attrsObj: string, key: string, creator: string): AttrRecord | undefined {
  let best: AttrRecord | undefined;
  for (const raw of h.getChanges([])) {
    let c: DecodedChange;
    try {
      c = A.decodeChange(raw);
    } catch {
      continue;
    }
    for (const op of c.ops) {
      if (op.obj !== attrsObj || op.key !== key || op.action !== 'set') continue;
      const bytes = opBytes(op.value);
      if (!bytes) continue;
      try {
        const r = decodeAttr(bytes, false);
        if (r.by === creator && (!best || r.ts > best.ts)) best = r;
      } catch {
        /* skipped */
      }
    }
  }
  return best;
}

export interface Inspected {
  /** Changes not already in the document. */
  fresh: number;
  /** Trial ids whose keys the changes write. */
  trials: Set<string>;
  /** The newest inspected record per trial (saves decoding it again when the view is rebuilt). */
  records: Map<string, TrialRecord>;
  attrs: boolean;
  genesis: StudyMeta | null;
}

export class RejectedChange extends Error {
  override name = 'RejectedChange';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

export type DecodedChange = ReturnType<typeof A.decodeChange>;

/** Orders a batch so a change comes after the changes of the batch it depends on. */
function topoSort(changes: DecodedChange[]): DecodedChange[] {
  const byHash = new Map(changes.map((c) => [c.hash!, c]));
  const out: DecodedChange[] = [];
  const seen = new Set<string>();
  const visit = (c: DecodedChange, depth: number): void => {
    if (seen.has(c.hash!)) return;
    seen.add(c.hash!);
    if (depth < 10_000) for (const d of c.deps) {
      const dep = byHash.get(d);
      if (dep) visit(dep, depth + 1);
    }
    out.push(c);
  };
  for (const c of changes) visit(c, 0);
  return out;
}

/**
 * The bytes of a decoded `set` op. Automerge's decodeChange gives bytes as a Uint8Array or, for
 * changes taken from a loaded document, as a plain array of byte values (a scalar can never be a JS
 * array otherwise: lists are objects of their own).
 */
function opBytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v;
  if (Array.isArray(v) && v.length <= LIMITS.recordBytes && v.every((x) => Number.isInteger(x) && x >= 0 && x <= 255)) return Uint8Array.from(v as number[]);
  return null;
}

/**
 * Decodes raw changes (not yet in the document), or throws RejectedChange. The size is checked first,
 * then the operations are counted from the columns' run lengths (change-bounds.ts) before Automerge
 * materialises any of them: a 150-byte change cannot make us build 300,000 operations (issue 15 F1).
 * Trial shard changes (root `set`s of bytes) are decoded in change-bounds.ts, values copied whole:
 * Automerge hands a value to JavaScript byte by byte, seconds for a flood of fat trials (issue 15 F15).
 */
export function decodeChanges(raw: readonly Uint8Array[]): DecodedChange[] {
  return raw.map((c) => {
    checkChangeBounds(c);
    return decodeOne(c).change;
  });
}

/**
 * Decodes changes whose bounds were checked already (`checkChangeBounds` on each, as the gossip inbox
 * and the catch-up receiver do for a whole message or piece before decoding any), without counting
 * their rows again. `own`: every one was decoded by our own strict decoder (change-bounds.ts
 * `decodeRootBytesChange`), which sync-adapter.ts `chainHeads` needs; otherwise Automerge decoded some.
 */
export function decodeBoundedChanges(raw: readonly Uint8Array[]): { decoded: DecodedChange[]; own: boolean } {
  let own = true;
  const decoded = raw.map((c) => {
    const d = decodeOne(c);
    own &&= d.own;
    return d.change;
  });
  return { decoded, own };
}

function decodeOne(c: Uint8Array): { change: DecodedChange; own: boolean } {
  try {
    const mine = decodeRootBytesChange(c) as unknown as DecodedChange | null;
    return mine ? { change: mine, own: true } : { change: A.decodeChange(c), own: false };
  } catch (e) {
    throw new RejectedChange('undecodable', `a change does not decode: ${(e as Error).message}`);
  }
}

/** Size and operation count of one raw change, before any decoding (throws RejectedChange). */
export function checkChangeBounds(c: unknown): number {
  if (!(c instanceof Uint8Array)) throw new RejectedChange('schema', 'a change is not bytes');
  if (c.byteLength > LIMITS.changeBytes) throw new RejectedChange('too-large', `a change of ${c.byteLength} bytes exceeds ${LIMITS.changeBytes}`);
  try {
    return countChangeRows(c, LIMITS.opsPerChange);
  } catch (e) {
    if (e instanceof ChangeBoundsError) throw new RejectedChange(e.reason, e.message);
    throw e;
  }
}

/**
 * Checks a batch of changes against the merge rules before any of it is applied. Changes already in
 * the document are skipped (replays are harmless no-ops). Throws RejectedChange on the first broken
 * rule; the caller drops the whole batch.
 */
export function inspectChanges(ctx: InspectContext, batch: DecodedChange[]): Inspected {
  const fresh = batch.filter((c) => !hasChanges(ctx.doc, [c.hash!]));
  const result: Inspected = { fresh: fresh.length, trials: new Set(), records: new Map(), attrs: false, genesis: null };
  if (fresh.length === 0) return result;
  const working = new Map<string, TrialRecord>();
  const workingAttrs = new Map<string, AttrRecord>();
  const parts = docParts(ctx.doc);
  let trialsObj = parts.trials;
  let attrsObj = parts.attrs;
  let hasMeta = parts.meta !== undefined;
  let creator: string | null | undefined;
  for (const c of topoSort(fresh)) {
    if (c.ops.length > LIMITS.opsPerChange) throw new RejectedChange('too-many-ops', `a change has ${c.ops.length} operations`);
    const rootOps = c.ops.filter((op) => op.obj === '_root');
    if (rootOps.length > 0) {
      // Only the genesis: exactly meta + trials + attrs, once, meta signed and matching this study.
      if (hasMeta || trialsObj || attrsObj) throw new RejectedChange('root-write', 'a change writes the document root after its genesis');
      if (rootOps.length !== c.ops.length || c.ops.length !== 3) throw new RejectedChange('root-write', 'the genesis change has unexpected operations');
      let meta: StudyMeta | null = null;
      c.ops.forEach((op, i) => {
        const opId = `${c.startOp + i}@${c.actor}`;
        if (op.key === 'meta' && op.action === 'set' && opBytes(op.value) !== null) {
          try {
            meta = decodeMeta(opBytes(op.value));
          } catch (e) {
            throw new RejectedChange((e as WireError).reason ?? 'bad-meta', `genesis meta: ${(e as Error).message}`);
          }
        } else if (op.key === 'trials' && op.action === 'makeMap') trialsObj = opId;
        else if (op.key === 'attrs' && op.action === 'makeMap') attrsObj = opId;
        else throw new RejectedChange('root-write', `the genesis change has an unexpected ${op.action} of ${String(op.key).slice(0, 40)}`);
      });
      const m = meta as StudyMeta | null;
      if (!m || !trialsObj || !attrsObj) throw new RejectedChange('root-write', 'the genesis change is incomplete');
      const metaBytes = opBytes(c.ops.find((op) => op.key === 'meta')!.value)!;
      if (c.hash !== expectedGenesisHash(metaBytes)) throw new RejectedChange('forged-genesis', 'the genesis change is not the one its signed meta determines');
      if (m.id !== ctx.studyId) throw new RejectedChange('wrong-study', `the genesis is for study ${m.id}, not ${ctx.studyId}`);
      hasMeta = true;
      result.genesis = m;
      continue;
    }
    for (const op of c.ops) {
      if (op.action === 'del') throw new RejectedChange('delete', 'a change deletes a key');
      if (op.action !== 'set' || typeof op.key !== 'string' || (op as { insert?: boolean }).insert) throw new RejectedChange('bad-op', `a change has a ${op.action} operation`);
      const value = opBytes(op.value);
      if (value === null) throw new RejectedChange('not-bytes', 'a change writes a value that is not bytes');
      if (trialsObj !== null && op.obj === trialsObj) {
        // Trials live in their shard documents; the study document's trials map stays empty.
        if (!ctx.trialsInStudyDoc) throw new RejectedChange('wrong-document', 'a change writes a trial into the study document (trials live in shard documents)');
        const rec = trialRecordOf(value, op.key, ctx.studyId);
        acceptForward(rec, working, ctx.current, result);
      } else if (attrsObj !== null && op.obj === attrsObj) {
        let rec: AttrRecord;
        try {
          rec = decodeAttr(value);
        } catch (e) {
          throw new RejectedChange((e as WireError).reason ?? 'bad-record', `study attr: ${(e as Error).message}`);
        }
        if (rec.key !== op.key || rec.st !== ctx.studyId) throw new RejectedChange('wrong-key', 'a study attr record is stored under another key or study');
        creator ??= result.genesis?.creator ?? (parts.meta ? creatorOf(parts.meta) : null);
        if (isSetting(rec.key) && rec.by !== creator) {
          // The study's settings (sampler, pruner, every system attr) are the creator's alone (issue 15 F4).
          throw new RejectedChange('not-creator', `study attr ${rec.key.slice(0, 60)} was written by ${rec.by.slice(0, 60)}, not by the study's creator`);
        }
        if (!(rec.ts <= Date.now() + MAX_ATTR_AHEAD_MS)) {
          throw new RejectedChange('future-attr', `study attr ${rec.key.slice(0, 60)} is dated ${Math.round((rec.ts - Date.now()) / 1000)} s ahead of this clock (at most ${MAX_ATTR_AHEAD_MS / 1000} s)`);
        }
        const prev = workingAttrs.get(rec.key) ?? (parts.attrs ? currentAttr(ctx.doc, parts.attrs, rec.key, creator) : undefined);
        if (prev && (rec.ts < prev.ts || (rec.ts === prev.ts && rec.by <= prev.by))) {
          throw new RejectedChange('stale-attr', `study attr ${rec.key.slice(0, 60)} would be replaced by an older record`);
        }
        workingAttrs.set(rec.key, rec);
        result.attrs = true;
      } else {
        throw new RejectedChange('unknown-object', 'a change writes an object outside the schema');
      }
    }
  }
  return result;
}


// ---------------------------------------------------------------- trial shards

/**
 * Trials per shard document: a shard holds the trials `owner:seq` with floor(seq / SHARD_TRIALS)
 * equal to its bucket, so applying a change costs O(SHARD_TRIALS), never O(study).
 */
export const SHARD_TRIALS = 64;

export interface ShardId {
  key: string;
  owner: string;
  bucket: number;
}

const SHARD_KEY = /^([1-9A-HJ-NP-Za-km-z]{32,128})\.(\d{1,15})$/;

export function shardKeyOf(owner: string, seq: number): string {
  return `${owner}.${Math.floor(seq / SHARD_TRIALS)}`;
}

/** Parses a shard key `<owner peer id>.<bucket>`; null if it is not one. */
export function parseShardKey(key: unknown): ShardId | null {
  if (typeof key !== 'string' || key.length > 160) return null;
  const m = SHARD_KEY.exec(key);
  if (!m) return null;
  const bucket = Number(m[2]);
  if (!Number.isSafeInteger(bucket)) return null;
  return { key, owner: m[1]!, bucket };
}

export interface ShardInspectContext {
  studyId: string;
  shard: ShardId;
  /** The study's number of directions (from its meta): a record with values must have one per direction. */
  directions?: number;
  /** Whether a change is already in the shard. */
  has(hash: string): boolean;
  /** The current record of a trial (the view). */
  current(trialId: string): TrialRecord | undefined;
  /**
   * Changes the shard's owner vouched for (`openVoucher`): their records' signatures are not checked
   * one by one (the voucher's one signature, by the same owner, covers the change bytes by hash).
   * Every other rule still applies to them.
   */
  vouched?: ((hash: string) => boolean) | undefined;
}

export interface ShardInspected {
  fresh: DecodedChange[];
  trials: Set<string>;
  records: Map<string, TrialRecord>;
  /** The bytes each record of `records` was decoded from. */
  values?: Map<string, Uint8Array>;
}

/**
 * The merge rules of a shard document, on every incoming change: every operation is a `set` of bytes
 * at the root, under the id of a trial of this shard's owner and bucket, holding a record signed by
 * that owner for this study and this key, moving the trial forward (version, state, finished final).
 * Nothing else (no objects, lists, deletes, text). Replays of changes already held are skipped.
 */
export function inspectShardChanges(ctx: ShardInspectContext, batch: DecodedChange[]): ShardInspected {
  const fresh = batch.filter((c) => !ctx.has(c.hash!));
  const result: ShardInspected = { fresh, trials: new Set(), records: new Map(), values: new Map() };
  const working = new Map<string, TrialRecord>();
  for (const c of topoSort(fresh)) {
    if (c.ops.length > LIMITS.opsPerChange) throw new RejectedChange('too-many-ops', `a change has ${c.ops.length} operations`);
    const verify = !ctx.vouched?.(c.hash!);
    for (const op of c.ops) {
      if (op.action === 'del') throw new RejectedChange('delete', 'a change deletes a key');
      if (op.obj !== '_root') throw new RejectedChange('unknown-object', 'a shard change writes an object outside the schema');
      if (op.action !== 'set' || typeof op.key !== 'string' || (op as { insert?: boolean }).insert) throw new RejectedChange('bad-op', `a change has a ${op.action} operation`);
      const value = opBytes(op.value);
      if (value === null) throw new RejectedChange('not-bytes', 'a change writes a value that is not bytes');
      const rec = trialRecordOf(value, op.key, ctx.studyId, verify);
      if (rec.o !== ctx.shard.owner || Math.floor(rec.q / SHARD_TRIALS) !== ctx.shard.bucket) {
        throw new RejectedChange('wrong-shard', `trial ${rec.id.slice(0, 100)} does not belong in shard ${ctx.shard.key.slice(0, 80)}`);
      }
      if (ctx.directions !== undefined && rec.vals !== null && rec.vals.length !== ctx.directions) {
        // Honest owners write one value per direction; more or fewer would take over a Pareto front (issue 15 F7).
        throw new RejectedChange('wrong-values', `trial ${rec.id.slice(0, 100)} has ${rec.vals.length} value(s); the study has ${ctx.directions} direction(s)`);
      }
      acceptForward(rec, working, ctx.current, result);
      result.values!.set(rec.id, value);
    }
  }
  return result;
}

/** Decodes a trial record written under `key` and checks it belongs there and to this study. */
function trialRecordOf(value: Uint8Array, key: string, studyId: string, verify = true): TrialRecord {
  let rec: TrialRecord;
  try {
    rec = decodeTrial(value, verify);
  } catch (e) {
    throw new RejectedChange((e as WireError).reason ?? 'bad-record', `trial ${key.slice(0, 100)}: ${(e as Error).message}`);
  }
  if (rec.id !== key) throw new RejectedChange('wrong-key', `a record of trial ${rec.id.slice(0, 100)} is stored under ${key.slice(0, 100)}`);
  if (rec.st !== studyId) throw new RejectedChange('wrong-study', `a record of study ${rec.st.slice(0, 40)} was sent for ${studyId}`);
  return rec;
}

/** Accepts `rec` only if it moves its trial forward from the newest version seen (in this change or before). */
function acceptForward(
  rec: TrialRecord,
  working: Map<string, TrialRecord>,
  current: (id: string) => TrialRecord | undefined,
  result: { trials: Set<string>; records: Map<string, TrialRecord> },
): void {
  const prev = working.get(rec.id) ?? current(rec.id);
  const why = forwardReason(prev, rec);
  if (why) throw new RejectedChange(why, `trial ${rec.id.slice(0, 100)} v${rec.v} ${rec.s} cannot replace v${prev!.v} ${prev!.s}`);
  working.set(rec.id, rec);
  result.trials.add(rec.id);
  result.records.set(rec.id, rec);
}

// ---------------------------------------------------------------- vouchers (catch-up of shards)

/**
 * A shard owner's voucher: ONE signature over the hashes of the changes of its shard, so a peer
 * catching up checks one signature per shard instead of one per record. Payload
 * `{ k: 'voucher', st: studyId, sh: shardKey, h: 32-byte change hashes, concatenated }`, sealed
 * (signed) like a record by the key of the owner named in the shard key.
 *
 * Why it is as safe as checking every record (issue 15): an Automerge change hash is SHA-256 over
 * the change's bytes, so a change whose hash the voucher lists is byte for byte one the owner
 * approved, and every record in it is a record of that owner's shard (`inspectShardChanges` still
 * checks owner, key, study, bucket, values and the forward rules on it, only the per-record signature
 * check is skipped). The one signature is by the same key each record signature would be by: a member
 * cannot make a voucher for another owner's shard, and a genuine voucher replayed by anyone vouches
 * only for bytes its owner approved. Changes the voucher does not list are checked record by record.
 * A hostile owner could vouch for a record with a broken signature of its own trial (which it could
 * as well have signed properly); so that an honest peer holding such a record never passes it on
 * unvouched (and is then charged for it by a peer checking record by record), a peer that took
 * changes under a voucher stores the voucher (persist.ts) before the changes, replaces it only by one
 * listing every hash it lists, and serves it with the shard (sync-adapter.ts).
 */
export const MAX_VOUCHER_HASHES = 4000;

/** The hash Automerge gives a change: SHA-256 of its chunk after the magic and checksum. */
export function changeHash(c: Uint8Array): string {
  return createHash('sha256').update(c.subarray(8)).digest('hex');
}

/** Signs a voucher for this peer's shard over the given change hashes (hex); null if there are too many. */
export function makeVoucher(key: PrivateKey, studyId: string, shardKey: string, hashes: readonly string[]): Uint8Array | null {
  if (hashes.length === 0 || hashes.length > MAX_VOUCHER_HASHES) return null;
  const h = new Uint8Array(32 * hashes.length);
  hashes.forEach((x, i) => h.set(Buffer.from(x, 'hex'), 32 * i));
  return seal(key, { k: 'voucher', st: studyId, sh: shardKey, h });
}

/** Checks a voucher (signed by the shard's owner, for this study and shard); returns the change hashes it lists. */
export function openVoucher(bytes: unknown, studyId: string, shard: ShardId): Set<string> {
  let p: Record<string, unknown>;
  try {
    p = open(bytes, () => shard.owner);
  } catch (e) {
    throw new RejectedChange((e as WireError).reason === 'bad-signature' ? 'bad-voucher' : 'schema', `a voucher for shard ${shard.key.slice(0, 80)}: ${(e as Error).message}`);
  }
  const h = p['h'];
  if (p['k'] !== 'voucher' || p['st'] !== studyId || p['sh'] !== shard.key || !(h instanceof Uint8Array) || h.byteLength % 32 !== 0 || h.byteLength > 32 * MAX_VOUCHER_HASHES) {
    throw new RejectedChange('bad-voucher', `a voucher is not one for shard ${shard.key.slice(0, 80)} of study ${studyId}`);
  }
  const out = new Set<string>();
  for (let i = 0; i < h.byteLength; i += 32) out.add(Buffer.from(h.buffer, h.byteOffset + i, 32).toString('hex'));
  return out;
}

/** Writes several of this peer's sealed records into a shard document in one change. */
export function writeShardRecords(h: DocHandle, trials: Map<string, Uint8Array>): Uint8Array | null {
  for (const [id, b] of trials) h.put('_root', id, b, 'bytes');
  const hash = h.commit();
  if (hash === null) return null;
  noteChanges(h, [hash]);
  return h.getLastLocalChange() ?? null;
}

/** The current record of a trial in a shard (highest valid version among concurrent values). */
export function readShardTrial(h: DocHandle, trialId: string): TrialRecord | undefined {
  const all = h.getAll('_root', trialId);
  return all.length ? pickRecord(all.map((x) => x[1])) : undefined;
}

// ---------------------------------------------------------------- writing

/**
 * The genesis change is a pure function of the signed meta bytes (actor derived from them, time 0;
 * Ed25519 signatures are deterministic), so every replica can rebuild it and accept only a genesis
 * whose hash matches: nobody can hand a joiner a genesis with maps of their own making.
 */
function buildGenesis(metaBytes: Uint8Array): A.Doc<StudyDoc> {
  const actor = createHash('sha256').update('peertune-genesis').update(metaBytes).digest('hex').slice(0, 32);
  return A.change(A.init<StudyDoc>({ actor } as never), { time: 0 }, (d) => {
    d.meta = metaBytes;
    d.trials = {};
    d.attrs = {};
  });
}

const genesisHashes = new Map<string, string>();
function expectedGenesisHash(metaBytes: Uint8Array): string {
  const k = Buffer.from(metaBytes).toString('base64');
  let h = genesisHashes.get(k);
  if (!h) {
    h = A.getHeads(buildGenesis(metaBytes))[0]!;
    if (genesisHashes.size > 1000) genesisHashes.clear();
    genesisHashes.set(k, h);
  }
  return h;
}

/** A new study's document; further local writes go through a fresh actor (see the facts on actors). */
export function genesisDoc(key: PrivateKey, meta: StudyMeta): A.Doc<StudyDoc> {
  return A.clone(buildGenesis(seal(key, meta)));
}

/**
 * Writes several of this peer's records (already signed) in one change, straight through the
 * backend (an `A.change` would rebuild the JS view of a map with every trial in it: O(trials) per
 * write). Returns the change, or null if nothing was written.
 */
export function writeRecords(h: DocHandle, trials: Map<string, Uint8Array>, attrs?: Map<string, Uint8Array>): Uint8Array | null {
  const parts = docParts(h);
  if (!parts.trials || !parts.attrs) throw new RecordError('no-genesis', 'the study document has not arrived yet');
  for (const [id, b] of trials) h.put(parts.trials, id, b, 'bytes');
  if (attrs) for (const [k, b] of attrs) h.put(parts.attrs, k, b, 'bytes');
  const hash = h.commit();
  if (hash === null) return null;
  noteChanges(h, [hash]);
  return h.getLastLocalChange() ?? null;
}

/** Study attrs as seen now: last writer (by time, then writer id) wins per key. */
export function readAttrs(h: DocHandle): { user: Record<string, unknown>; system: Record<string, unknown> } {
  const user: Record<string, unknown> = {};
  const system: Record<string, unknown> = {};
  const { attrs: attrsObj, meta } = docParts(h);
  if (!attrsObj) return { user, system };
  const creator = meta ? creatorOf(meta) : null;
  for (const key of h.keys(attrsObj)) {
    const best = currentAttr(h, attrsObj, key, creator);
    if (!best) continue;
    if (key.startsWith('u:')) user[key.slice(2)] = best.val;
    else system[key.slice(2)] = best.val;
  }
  return { user, system };
}
