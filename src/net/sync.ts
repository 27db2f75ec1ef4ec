/**
 * Catch-up over a stream of our own (`/peertune/sync/1.0.0`): on every new connection and whenever
 * heartbeats show two replicas differ, the two peers swap catalogs (which studies exist) and run the
 * target's catch-up protocol for every study either has (the replicated storage: per-shard heads,
 * then the missing changes in pieces), until both sides have nothing more to send. Each `sync` frame
 * answers one frame of the other side, so a peer receives only as fast as it asks.
 * This is what lets a joiner, or a peer back from a partition, converge without relying on gossip.
 *
 * Pipelining: a peer's catalog says how many extra pieces it takes after each answer (`w`, at most
 * PIPELINE). A peer with pieces to send then follows each piece it answers with up to that many `more`
 * frames (pieces that need no answer), so it encodes the next pieces while the other checks the last,
 * instead of the two taking turns. It is still paced by the receiver: the next answer, and with it the
 * next pieces, comes only once the receiver handled every frame before it, so at most 2w + 1 pieces
 * are ever on their way to a receiver or waiting for it. A peer that does not announce `w` (an older
 * one) gets no `more` frame and the lock-step protocol as before.
 *
 * The module is generic: a `SyncTarget` (the replicated storage) owns the documents, generates and
 * receives sync messages, and inspects every change before applying it. Frames are size-limited before
 * decoding; a malformed frame or a rejected change ends the session and is counted.
 */
import { logger } from '../logging.js';
import type { Channel } from './node.js';
import { asObject, pack, unpackUntrusted, WireError } from './wire.js';

export type CatalogEntry = [studyId: string, name: string];

export interface SyncTarget<S> {
  catalog(): CatalogEntry[];
  /** A study the remote has; true if we sync it (the target may create an empty replica for it). */
  offer(entry: CatalogEntry, from: string): boolean;
  has(studyId: string): boolean;
  newState(studyId: string): S;
  generate(studyId: string, state: S): Uint8Array | null | Promise<Uint8Array | null>;
  /** Applies a sync message after inspecting it; throws (with a `reason`) to reject it. */
  receive(studyId: string, state: S, message: Uint8Array, from: string): void | Promise<void>;
  /** Both sides had nothing more to send for this study. */
  synced(studyId: string, from: string): void;
  count(reason: string): void;
}

export interface SyncLimits {
  maxFrameBytes: number;
  maxStudies: number;
  /** Hard cap on a session's length. */
  sessionTimeoutMs: number;
  /**
   * No complete frame from the remote for this long ends the session, charged to the remote: a
   * stream that announces a large frame and trickles it (slowloris) holds a buffer no longer.
   */
  idleTimeoutMs?: number;
}

/** Extra pieces (`more` frames) this peer takes after each answer, and sends at most. */
export const PIPELINE = 2;

interface StudySession<S> {
  state: S;
  sentNull: boolean;
  done: boolean;
}

/** Runs one sync session over an open channel; resolves when it ends (never throws). */
export async function runSyncSession<S>(ch: Channel, target: SyncTarget<S>, initiator: boolean, limits: SyncLimits): Promise<boolean> {
  const studies = new Map<string, StudySession<S>>();
  let theirCatalog = false;
  /** How many `more` frames the remote takes after each answer (its catalog's `w`; 0 for a peer that does not say). */
  let theirWindow = 0;
  let finished = false;
  const timer = setTimeout(() => {
    target.count('sync:timeout');
    ch.reportInvalid('timeout');
    ch.abort('sync session timed out');
  }, limits.sessionTimeoutMs);
  timer.unref();
  const idleMs = limits.idleTimeoutMs ?? 15_000;
  let idle: NodeJS.Timeout | null = null;
  const arm = (): void => {
    if (idle) clearTimeout(idle);
    const due = Date.now() + idleMs;
    idle = setTimeout(() => {
      // Fired far past its time: this process itself was stalled (a starved or saturated machine), and
      // frames may be waiting unread behind this timer. Not the remote's doing: it gets the time again
      // (the session's hard cap still holds). Under load, the heal bench lost 15 to 30 s to sessions
      // ended (and charged) this way.
      if (Date.now() - due > idleMs / 2) {
        target.count('stall:sync-idle-late');
        arm();
        return;
      }
      target.count('sync:idle-timeout');
      ch.reportInvalid('idle-timeout');
      ch.abort('no complete sync frame in time');
    }, idleMs);
    idle.unref();
  };
  arm();

  const send = (msg: object): void => ch.send(pack(msg));
  const start = async (id: string): Promise<StudySession<S>> => {
    let s = studies.get(id);
    if (!s) {
      s = { state: target.newState(id), sentNull: false, done: false };
      studies.set(id, s);
      const m = await target.generate(id, s.state);
      send({ t: 'sync', s: id, m: m ?? null });
      s.sentNull = m === null;
    }
    return s;
  };
  const allDone = (): boolean => theirCatalog && [...studies.values()].every((s) => s.done);

  try {
    send({ t: 'cat', s: target.catalog().slice(0, limits.maxStudies), w: PIPELINE });
    if (initiator) for (const [id] of target.catalog()) await start(id);
    for await (const bytes of ch.frames(limits.maxFrameBytes)) {
      arm();
      const msg = asObject(unpackUntrusted(bytes, { maxBytes: limits.maxFrameBytes, maxDepth: 4, maxNodes: 4 * limits.maxStudies + 16 }), 'sync frame');
      if (msg['t'] === 'cat') {
        const list = msg['s'];
        if (!Array.isArray(list) || list.length > limits.maxStudies) throw new WireError('schema', 'catalog is not a list of studies');
        const w = msg['w'];
        if (w !== undefined && !(Number.isInteger(w) && (w as number) >= 0 && (w as number) <= 64)) throw new WireError('schema', 'a catalog\'s pipelining window is not a whole number up to 64');
        theirWindow = Math.min(PIPELINE, (w as number | undefined) ?? 0);
        for (const e of list) {
          if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || typeof e[1] !== 'string' || e[0].length > 64 || e[1].length > 256) {
            throw new WireError('schema', 'a catalog entry is not [studyId, name]');
          }
          if (target.offer([e[0], e[1]], ch.remotePeer)) await start(e[0]);
        }
        if (!initiator) for (const [id] of target.catalog()) await start(id);
        theirCatalog = true;
      } else if (msg['t'] === 'sync') {
        const id = msg['s'];
        const m = msg['m'];
        if (typeof id !== 'string' || (m !== null && !(m instanceof Uint8Array))) throw new WireError('schema', 'a sync frame is not {s, m}');
        if (!studies.has(id) && !target.has(id)) {
          send({ t: 'skip', s: id });
          continue;
        }
        const s = studies.get(id) ?? (await start(id));
        if (m !== null) await target.receive(id, s.state, m, ch.remotePeer);
        const out = await target.generate(id, s.state);
        if (out !== null) {
          send({ t: 'sync', s: id, m: out });
          s.sentNull = false;
          s.done = false;
          // The next pieces go now, unanswered (see Pipelining above); the answer to this one paces them.
          for (let k = 0; k < theirWindow; k++) {
            const more = await target.generate(id, s.state);
            if (more === null) break;
            send({ t: 'more', s: id, m: more });
          }
        } else {
          if (m === null) {
            if (!s.done) target.synced(id, ch.remotePeer);
            s.done = true;
            if (!s.sentNull) send({ t: 'sync', s: id, m: null });
          } else send({ t: 'sync', s: id, m: null });
          s.sentNull = true;
        }
      } else if (msg['t'] === 'more') {
        // A piece that needs no answer, after a piece of the same study (only sent to a peer that announced `w`).
        const id = msg['s'];
        const m = msg['m'];
        if (typeof id !== 'string' || !(m instanceof Uint8Array)) throw new WireError('schema', 'a more frame is not {s, m}');
        const s = studies.get(id);
        // A study we skipped (we do not have it): its pieces are no violation, and nothing to us.
        if (s) await target.receive(id, s.state, m, ch.remotePeer);
      } else if (msg['t'] === 'skip') {
        const s = typeof msg['s'] === 'string' ? studies.get(msg['s']) : undefined;
        if (s) s.done = true;
      } else if (msg['t'] === 'bye') {
        finished = true;
        break;
      } else {
        throw new WireError('schema', 'unknown sync frame type');
      }
      if (initiator && allDone()) {
        send({ t: 'bye' });
        finished = true;
        break;
      }
    }
    await ch.close();
    return finished;
  } catch (e) {
    const reason = (e as WireError).reason ?? 'error';
    target.count(`sync:${reason}`);
    // Only what the remote sent counts against it: a stream torn down (no reason) is not its fault.
    // Missing dependencies count too: the catch-up protocol sends a shard's changes in order from
    // heads we declared, so an honest peer never sends a change whose dependencies we lack.
    // A target may end a session for a reason of its own that is no violation (its serving budget): not charged.
    if ((e as WireError).reason !== undefined && (e as { noCharge?: boolean }).noCharge !== true) ch.reportInvalid(reason);
    logger.debug(`sync session with ${ch.remotePeer} ended: ${(e as Error).message}`);
    ch.abort(reason);
    return false;
  } finally {
    clearTimeout(timer);
    if (idle) clearTimeout(idle);
  }
}
