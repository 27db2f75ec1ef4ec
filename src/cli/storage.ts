/**
 * Where the command gets its storage: the one place that decides between a peer's replica (a data dir
 * plus libp2p, the normal case) and a throwaway in-memory study (`--in-memory`). Every subcommand
 * calls `openStorage`, so the network flags mean the same thing everywhere.
 *
 * Defaults that make the two-command setup work: a peer that does not `--join` anyone listens on a
 * fixed port (7171) so the address it prints stays valid for the next process on the same data dir;
 * a peer that joins listens on any free port. Query commands (trials, export, ...) stay offline unless
 * given `--join`, and then use a temporary data dir unless given one.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath, resolve } from 'node:path';
import { InMemoryStorage } from '../storage/memory.js';
import type { PeerStorage } from '../storage/replicated/index.js';
import type { Storage, StudyInfo } from '../storage/storage.js';
import { UsageError } from './errors.js';

export const DEFAULT_PORT = 7171;

/**
 * How long a peer's heartbeat keeps it alive: the storage's grace period for its RUNNING trials, and
 * what `worker --wait-for-peers` counts as online. One number, passed to the storage below.
 */
export const LIVE_WITHIN_MS = 10_000;

export interface NetworkFlags {
  dataDir?: string;
  listen?: string[];
  join?: string[];
  mdns?: boolean;
  swarmKey?: string;
  allowPeer?: string[];
  /** --ignore-peer: read the study as if these peers' trials did not exist (excludePeers). */
  ignorePeer?: string[];
  /** --trust-peer: read only trials owned by these peers and this one (trustPeers). */
  trustPeer?: string[];
  inMemory?: boolean;
}

/** Which study a command means: --study-name, --study-id, or both (then they must agree). */
export interface StudyRef {
  name?: string | undefined;
  id?: string | undefined;
}

export interface OpenedStorage {
  storage: Storage;
  /** This peer's id (null for in-memory storage). */
  peerId: string | null;
  /** Addresses others can `--join` (empty when offline). */
  multiaddrs(): string[];
  dataDir: string | null;
  /** True when the data dir is a throwaway one made for a query with --join. */
  temporary: boolean;
  close(): Promise<void>;
}

/**
 * serve: create-study, worker, node (a data dir, listening). query: read commands (offline on an
 * existing data dir, or a temporary replica with --join). edit: ask, tell, delete-study (an existing
 * data dir, offline unless --join or --listen is given).
 */
export type Role = 'serve' | 'query' | 'edit';

function defaultDataDir(): string {
  return process.env['PEERTUNE_DATA_DIR'] || './peertune-data';
}

/**
 * Opens this process's storage. `serve` roles (create-study, worker, node) keep a data dir and listen;
 * `query` roles read a data dir offline, or sync from `--join` peers into a temporary replica.
 */
export async function openStorage(flags: NetworkFlags, role: Role): Promise<OpenedStorage> {
  if (flags.inMemory) {
    if (flags.ignorePeer?.length || flags.trustPeer?.length) throw new UsageError('--ignore-peer and --trust-peer filter other peers\' trials; an --in-memory study has none');
    if (flags.join?.length || flags.listen?.length || flags.dataDir) {
      throw new UsageError('--in-memory runs a single-process study; it cannot be combined with --data-dir, --listen or --join');
    }
    const storage = new InMemoryStorage();
    return { storage, peerId: null, multiaddrs: () => [], dataDir: null, temporary: false, close: () => storage.close() };
  }
  const join = flags.join ?? [];
  for (const a of join) {
    if (!a.startsWith('/')) throw new UsageError(`--join ${JSON.stringify(a)} is not a multiaddr; expected something like /ip4/192.168.1.10/tcp/7171/p2p/12D3KooW...`);
  }
  let listen = flags.listen;
  for (const a of listen ?? []) {
    if (!a.startsWith('/')) throw new UsageError(`--listen ${JSON.stringify(a)} is not a multiaddr; expected something like /ip4/0.0.0.0/tcp/7171`);
  }
  let tempDir: string | null = null;
  let dataDir: string;
  if (role === 'query' && !flags.dataDir && join.length > 0) {
    tempDir = await mkdtemp(joinPath(tmpdir(), 'peertune-query-'));
    dataDir = tempDir;
  } else {
    dataDir = resolve(flags.dataDir ?? defaultDataDir());
    if (role !== 'serve' && join.length === 0 && !existsSync(dataDir)) {
      throw new UsageError(
        `data dir ${dataDir} does not exist; pass the --data-dir of a peer${role === 'query' ? ', or --join a running peer' : ''} (create-study makes one)`,
      );
    }
  }
  if (listen === undefined) {
    if (role !== 'serve') listen = join.length > 0 ? ['/ip4/127.0.0.1/tcp/0'] : [];
    else listen = join.length > 0 ? ['/ip4/0.0.0.0/tcp/0'] : [`/ip4/0.0.0.0/tcp/${DEFAULT_PORT}`];
  }
  // Loaded here, not at the top: libp2p, Automerge and level take a while to import, and an
  // in-memory command (worker --in-memory, serve for a Python study in memory) needs none of them.
  const [{ parsePeerIds, readSwarmKeyFile }, { openPeerStorage }] = await Promise.all([import('../security/index.js'), import('../storage/replicated/index.js')]);
  const swarmKey = flags.swarmKey ? await readSwarmKeyFile(flags.swarmKey) : undefined;
  const allowPeers = flags.allowPeer?.length ? parsePeerIds(flags.allowPeer) : undefined;
  const excludePeers = flags.ignorePeer?.length ? parsePeerIds(flags.ignorePeer, '--ignore-peer') : undefined;
  const trustPeers = flags.trustPeer?.length ? parsePeerIds(flags.trustPeer, '--trust-peer') : undefined;
  let storage: PeerStorage;
  try {
    storage = await openPeerStorage({ dataDir, listen, join, mdns: flags.mdns ?? false, swarmKey, allowPeers, excludePeers, trustPeers, staleAfterMs: LIVE_WITHIN_MS });
  } catch (err) {
    if (tempDir) await rm(tempDir, { recursive: true, force: true });
    throw explainOpenError(err, dataDir, listen);
  }
  return {
    storage,
    peerId: storage.peerId,
    multiaddrs: () => storage.multiaddrs(),
    dataDir,
    temporary: tempDir !== null,
    close: async () => {
      await storage.close();
      if (tempDir) await rm(tempDir, { recursive: true, force: true });
    },
  };
}

function explainOpenError(err: unknown, dataDir: string, listen: string[]): unknown {
  const text = `${(err as Error)?.message ?? ''} ${String((err as { cause?: unknown })?.cause ?? '')} ${(err as { code?: string })?.code ?? ''}`;
  if (/LEVEL_LOCKED|LEVEL_DATABASE_NOT_OPEN|lock/i.test(text)) {
    return new UsageError(
      `data dir ${dataDir} is in use by another peertune process (a worker or node); give this process its own --data-dir, or --join the running one`,
    );
  }
  if (/EADDRINUSE|address already in use/i.test(text)) {
    return new UsageError(
      `cannot listen on ${listen.join(' ')}: the port is in use (another peertune worker or node on this machine?); pass --listen /ip4/0.0.0.0/tcp/0 to pick a free port`,
    );
  }
  return err;
}

/** The study a command's --study-name / --study-id flags name; a usage error if neither is given. */
export function studyRef(o: { studyName?: string | undefined; studyId?: string | undefined }): StudyRef {
  if (!o.studyName && !o.studyId) throw new UsageError('--study-name (or --study-id) is required');
  if (o.studyId !== undefined && !/^s[0-9a-f]{24}$/.test(o.studyId)) {
    throw new UsageError(`--study-id ${JSON.stringify(o.studyId).slice(0, 60)} is not a study id; expected s followed by 24 hex digits, as \`peertune studies\` prints`);
  }
  return { name: o.studyName, id: o.studyId };
}

/**
 * The study named by `ref` (a name, or --study-name / --study-id), waiting up to `waitSeconds` for
 * it to arrive from peers when this replica is joining others. Throws a one-line error naming the
 * studies that do exist, or listing the ids when several studies have the name (issue 15 F3).
 */
export async function findStudy(opened: OpenedStorage, ref: string | StudyRef, waitSeconds: number, joining: boolean): Promise<StudyInfo> {
  const { storage } = opened;
  const { name, id } = typeof ref === 'string' ? { name: ref, id: undefined } : ref;
  if (id !== undefined) return findStudyById(opened, id, name, waitSeconds, joining);
  if (name === undefined) throw new UsageError('--study-name (or --study-id) is required');
  let info: StudyInfo | null;
  try {
    // Joining, the wait runs even for a study already listed: one that just arrived is listed before its
    // first sync has brought its trials (see PeerStorage.waitForStudy).
    info = joining && storage.waitForStudy ? await storage.waitForStudy(name, waitSeconds * 1000) : storage.getStudy(name);
  } catch (e) {
    if ((e as Error)?.name === 'AmbiguousStudyError') throw new UsageError((e as Error).message);
    throw e;
  }
  if (!info) {
    const names = storage.listStudies().map((s) => s.studyName);
    if (opened.temporary) {
      throw new UsageError(
        `no study named "${name}" arrived from the joined peers within ${waitSeconds} s${names.length ? ` (they have: ${names.join(', ')})` : ''}; check the --join address (a private study also needs --swarm-key)`,
      );
    }
    const where = opened.dataDir ? `data dir ${opened.dataDir}` : 'this storage';
    throw new UsageError(
      `no study named "${name}" in ${where}${joining ? ` or from the joined peers within ${waitSeconds} s` : ''}; ${
        names.length ? `studies here: ${names.join(', ')}` : 'it has no studies (create one with peertune create-study, or --join a peer that has it)'
      }`,
    );
  }
  return info;
}

async function findStudyById(opened: OpenedStorage, id: string, name: string | undefined, waitSeconds: number, joining: boolean): Promise<StudyInfo> {
  const { storage } = opened;
  const byId = () => storage.listStudies().find((s) => s.studyId === id) ?? null;
  const info = joining && storage.waitForStudyId ? await storage.waitForStudyId(id, waitSeconds * 1000) : byId();
  if (!info) {
    const known = storage.listStudies().map((s) => `${s.studyName} (${s.studyId})`);
    const where = opened.temporary ? `the joined peers within ${waitSeconds} s` : `${opened.dataDir ? `data dir ${opened.dataDir}` : 'this storage'}${joining ? ` or from the joined peers within ${waitSeconds} s` : ''}`;
    throw new UsageError(`no study with id ${id} in ${where}; ${known.length ? `studies here: ${known.join(', ')}` : 'it has no studies'}`);
  }
  if (name !== undefined && info.studyName !== name) throw new UsageError(`study ${id} is named "${info.studyName}", not "${name}"; give either --study-id or --study-name, or both that agree`);
  return info;
}

/** Waits until the replica stops changing for a moment, so a query that joined peers sees their trials. */
export async function settle(storage: Storage, studyId: string | null, maxSeconds: number, quietMs = 800): Promise<void> {
  const version = () => (studyId ? storage.getVersion(studyId) : storage.listStudies().length);
  const deadline = Date.now() + maxSeconds * 1000;
  let last = version();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    const v = version();
    if (v !== last) {
      last = v;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) {
      return;
    }
  }
}
