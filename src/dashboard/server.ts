/**
 * The dashboard's HTTP server: a read-only view of one replica. It serves the page (plain ES
 * modules, Plotly from node_modules, the figure code of src/visualization compiled for the browser),
 * a small JSON API, and one Server-Sent Events stream per open study page that starts with a
 * snapshot of the trials and then carries only the trials that changed (see feed.ts), pushed as the
 * replica merges them.
 *
 * Safety: it binds 127.0.0.1 unless told otherwise, and any other host needs a token (the printed
 * URL carries it; the page keeps it in a cookie). On loopback it also checks the Host header, so a
 * web page elsewhere cannot reach it by DNS rebinding. Only GET and HEAD exist: nothing here writes.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { PeertuneError } from '../errors.js';
import { Worker } from 'node:worker_threads';
import type { PeerInfo, Storage, StudyInfo, TrialState } from '../storage/storage.js';
import { AmbiguousStudyError, TRIAL_STATES } from '../storage/storage.js';
import { plotlyBundlePath, plotlyModulesDir } from '../visualization/plotly-bundle.js';
import { StudyFeed } from './feed.js';
import type { ImportanceJob } from './importance-worker.js';

export class DashboardError extends PeertuneError {
  override name = 'DashboardError';
}

/** What the dashboard reads besides the Storage interface, when the storage has it (PeerStorage does). */
export interface DashboardStorage extends Storage {
  onTrialsChanged?(listener: (studyId: string) => void): () => void;
  stats?(): { counters: Record<string, number>; connectedPeers: string[]; studies: { studyId: string; name: string; trials: number; pendingChanges: number; heads: string }[] };
  multiaddrs?(): string[];
}

export interface DashboardOptions {
  storage: DashboardStorage;
  /** The study the page opens on (absent: the study list). */
  studyName?: string;
  /**
   * The study the page opens on, by id: a replica may hold several studies of one name (anyone can
   * create a study of any name, issue 15 F3); with `studyName` too, they must agree.
   */
  studyId?: string;
  /** Default 8080; 0 = any free port. */
  port?: number;
  /** Default 127.0.0.1. Any non-loopback host needs `token`. */
  host?: string;
  /** Required for non-loopback hosts; `true` = generate one. */
  token?: string | true;
  /** A peer not heard from for this long shows offline (default 5000 ms). */
  offlineAfterMs?: number;
}

export interface Dashboard {
  /** The URL to open (with the token, when one is needed). */
  readonly url: string;
  readonly port: number;
  readonly host: string;
  readonly token: string | null;
  close(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1', '[::1]']);
const isLoopback = (host: string): boolean => LOOPBACK.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host);

/** Modules of src/ the page imports (only these are served). */
const BROWSER_MODULES = new Set(['visualization/data', 'visualization/figures', 'visualization/pareto', 'hypervolume', 'multi-objective', 'errors']);

const here = fileURLToPath(import.meta.url);
const srcRoot = dirname(dirname(here));
const fromSource = here.endsWith('.ts');
// Compiled, the page's files are those `npm run build` copied into dist/dashboard/web (never src/).
const webDir = existsSync(join(dirname(here), 'web', 'index.html')) ? join(dirname(here), 'web') : null;

interface Asset {
  body: Buffer;
  gz: Buffer;
  type: string;
}

const assets = new Map<string, Promise<Asset>>();

function asset(key: string, load: () => Promise<{ body: Buffer | string; type: string }>): Promise<Asset> {
  let a = assets.get(key);
  if (!a) {
    a = load().then(({ body, type }) => {
      const buf = typeof body === 'string' ? Buffer.from(body) : body;
      return { body: buf, gz: gzipSync(buf, { level: 6 }), type };
    });
    a.catch(() => assets.delete(key));
    assets.set(key, a);
  }
  return a;
}

async function browserModule(rel: string): Promise<Asset> {
  return asset(`mod:${rel}`, async () => {
    if (!fromSource) return { body: readFileSync(join(srcRoot, `${rel}.js`)).toString().replace(/\n\/\/# sourceMappingURL=.*$/m, ''), type: 'text/javascript' };
    // Running from src/ (tsx, tests): strip the types with esbuild, which tsx brings along.
    const esbuild = (await import('esbuild')) as typeof import('esbuild');
    const out = await esbuild.transform(readFileSync(join(srcRoot, `${rel}.ts`), 'utf8'), { loader: 'ts', format: 'esm', target: 'es2022' });
    return { body: out.code, type: 'text/javascript' };
  });
}

const TYPES: Record<string, string> = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css' };

function webAsset(name: string): Promise<Asset> {
  return asset(`web:${name}`, async () => {
    if (!webDir) throw new DashboardError(`the dashboard's web assets are missing from this install (${join(dirname(here), 'web')}); \`npm run build\` copies them there`);
    const ext = name.slice(name.lastIndexOf('.'));
    const body = readFileSync(join(webDir, name));
    return { body: name === 'index.html' ? withPlotly(body.toString()) : body, type: TYPES[ext] ?? 'application/octet-stream' };
  });
}

/**
 * The page's Plotly script tags: the split build when it was built (its entry and the chunks it
 * imports at once, preloaded; the lazy ones stay out), else the one-file bundle. Both are async, so
 * Plotly evaluates while the page's own modules load.
 */
function withPlotly(html: string): string {
  const dir = plotlyModulesDir();
  let tags = '<link rel="preload" href="/static/plotly.min.js" as="script">\n<script id="plotly" src="/static/plotly.min.js" async></script>';
  if (dir) {
    const entry = readFileSync(join(dir, 'plotly.js'), 'utf8');
    const lazy = new Set([...entry.matchAll(/import\("\.\/(chunk-[A-Za-z0-9_-]+\.js)"\)/g)].map((m) => m[1]!));
    const eager = [...new Set([...entry.matchAll(/from\s*"\.\/(chunk-[A-Za-z0-9_-]+\.js)"/g)].map((m) => m[1]!))].filter((c) => !lazy.has(c));
    tags = [...eager.map((c) => `<link rel="modulepreload" href="/static/plotly/${c}">`), '<script id="plotly" type="module" src="/static/plotly/plotly.js" async></script>'].join('\n');
  }
  return html.replace(/^.*<!-- plotly -->.*$/m, tags);
}

function plotlyModule(name: string): Promise<Asset> {
  return asset(`plotly:${name}`, async () => {
    const dir = plotlyModulesDir();
    if (!dir || !existsSync(join(dir, name))) throw new NotFound(`no Plotly module ${name}`);
    return { body: readFileSync(join(dir, name)), type: 'text/javascript' };
  });
}

class NotFound extends DashboardError {
  override name = 'NotFound';
}

function plotlyAsset(): Promise<Asset> {
  return asset('plotly', async () => ({ body: readFileSync(plotlyBundlePath()), type: 'text/javascript' }));
}

export function validateDashboardOptions(opts: Pick<DashboardOptions, 'host' | 'port' | 'token'>): { host: string; port: number; token: string | null } {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 8080;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new DashboardError(`port must be an integer from 0 to 65535, got ${String(opts.port)}`);
  if (typeof host !== 'string' || host.length === 0) throw new DashboardError(`host must be a host name or IP address, got ${JSON.stringify(opts.host)}`);
  let token: string | null = opts.token === true ? randomBytes(18).toString('base64url') : (opts.token ?? null);
  if (token !== null && (typeof token !== 'string' || token.length < 8)) throw new DashboardError('token must be a string of at least 8 characters (or pass --token without a value to generate one)');
  if (!isLoopback(host) && token === null) {
    throw new DashboardError(
      `refusing to serve the dashboard on ${host} without a token: anyone who can reach that address would see the study; pass --token <secret> (or --token alone to generate one), or keep the default --host 127.0.0.1`,
    );
  }
  if (token === '') token = null;
  return { host, port, token };
}

export async function startDashboard(opts: DashboardOptions): Promise<Dashboard> {
  const { host, port, token } = validateDashboardOptions(opts);
  const storage = opts.storage;
  // The study the page opens on, checked now (a missing or ambiguous one is an error before listening).
  const opening = openingStudy(storage, opts);
  /** The route segment the page opens on: the study's name, or its id when the name is shared. */
  const openRef = opening ? refOf(opening) : null;
  const offlineAfterMs = opts.offlineAfterMs ?? 5000;
  const feeds = new Map<string, StudyFeed>();
  const streams = new Set<ServerResponse>();
  const timers: NodeJS.Timeout[] = [];
  const importanceCache = new Map<string, { key: string; body: unknown }>();

  const feedOf = (info: StudyInfo): StudyFeed => {
    let f = feeds.get(info.studyId);
    if (!f) {
      f = new StudyFeed(storage, info);
      feeds.set(info.studyId, f);
    }
    return f;
  };

  // Storages without change events (in-memory) are polled.
  if (!storage.onTrialsChanged) {
    const versions = new Map<string, number>();
    const t = setInterval(() => {
      for (const f of feeds.values()) {
        const v = storage.getVersion(f.info.studyId);
        if (versions.get(f.info.studyId) !== v) {
          versions.set(f.info.studyId, v);
          f.poll();
        }
      }
    }, 200);
    t.unref();
    timers.push(t);
  }

  const authorized = (req: IncomingMessage, url: URL): boolean => {
    if (token === null) return true;
    const given = url.searchParams.get('token') ?? cookie(req, 'peertune_token') ?? bearer(req);
    if (!given) return false;
    const a = Buffer.from(given);
    const b = Buffer.from(token);
    return a.length === b.length && timingSafeEqual(a, b);
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      if (!res.headersSent) send(res, e instanceof NotFound ? 404 : e instanceof DashboardError ? 400 : 500, { error: (e as Error).message });
      else res.end();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, { error: `the dashboard is read-only: ${req.method} is not allowed (no tell, no deletes)` });
    }
    if (isLoopback(host)) {
      const h = (req.headers.host ?? '').replace(/:\d+$/, '');
      if (!isLoopback(h)) return send(res, 421, { error: `unexpected Host header ${JSON.stringify(req.headers.host)}; open the dashboard at its printed loopback URL` });
    }
    if (!authorized(req, url)) return send(res, 401, { error: 'this dashboard needs its token: open the URL it printed (…?token=…)' });
    if (token !== null && url.searchParams.get('token') === token) {
      res.setHeader('Set-Cookie', `peertune_token=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/`);
    }
    const path = url.pathname;
    if (path === '/' || path === '/index.html') {
      res.setHeader('Content-Security-Policy', "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; worker-src blob:; frame-ancestors 'none'");
      return sendAsset(req, res, await webAsset('index.html'));
    }
    if (path === '/static/plotly.min.js') return sendAsset(req, res, await plotlyAsset(), true);
    const pm = /^\/static\/plotly\/((?:plotly|chunk-[A-Za-z0-9_-]+)\.js)$/.exec(path);
    // Chunk names carry their content hash; the entry's does not.
    if (pm) return sendAsset(req, res, await plotlyModule(pm[1]!), pm[1] !== 'plotly.js');
    const web = /^\/static\/([a-z0-9-]+\.(?:js|css))$/.exec(path);
    if (web) return sendAsset(req, res, await webAsset(web[1]!));
    const mod = /^\/mod\/([a-z/-]+)\.js$/.exec(path);
    if (mod) {
      if (!BROWSER_MODULES.has(mod[1]!)) return send(res, 404, { error: 'no such module' });
      return sendAsset(req, res, await browserModule(mod[1]!));
    }
    if (path === '/api/config') return send(res, 200, { studyName: opening?.studyName ?? null, studyId: opening?.studyId ?? null, study: openRef, readOnly: true, peerId: storage.ownerId, offlineAfterMs });
    if (path === '/api/studies') {
      const all = storage.listStudies();
      return send(res, 200, { studies: all.map((s) => summary(s, all)) });
    }
    const m = /^\/api\/studies\/([^/]+)(?:\/([a-z-]+))?$/.exec(path);
    if (m) {
      const name = decodeURIComponent(m[1]!);
      let info: StudyInfo | null;
      try {
        info = studyOf(name);
      } catch (e) {
        if (e instanceof AmbiguousStudyError) return send(res, 409, { error: e.message, studyIds: e.studyIds });
        throw e;
      }
      if (!info) return send(res, 404, { error: `no study named "${name}" in this replica` });
      const what = m[2] ?? 'summary';
      if (what === 'summary') return send(res, 200, summary(info));
      if (what === 'trials') return sendJson(res, 200, feedOf(info).snapshotJson());
      if (what === 'events') return stream(req, res, info);
      if (what === 'peers') return send(res, 200, peersOf(info));
      if (what === 'importances') return send(res, 200, await importances(info, url));
    }
    return send(res, 404, { error: `nothing at ${path}` });
  }

  /**
   * How the page names a study in its routes and API paths: by name, or by id when several studies
   * of the replica share that name (the name alone would be ambiguous).
   */
  function refOf(info: StudyInfo, all: readonly StudyInfo[] = storage.listStudies()): string {
    return all.some((s) => s.studyName === info.studyName && s.studyId !== info.studyId) ? info.studyId : info.studyName;
  }

  /** The study an API path names: a study id, or a name (an ambiguous name is a 409 listing the ids). */
  function studyOf(ref: string): StudyInfo | null {
    if (STUDY_ID.test(ref)) {
      const byId = storage.listStudies().find((s) => s.studyId === ref);
      if (byId) return byId;
    }
    return storage.getStudy(ref);
  }

  function summary(info: StudyInfo, all?: readonly StudyInfo[]) {
    const trials = storage.getAllTrials(info.studyId);
    const counts = Object.fromEntries(TRIAL_STATES.map((s) => [s, 0])) as Record<TrialState, number>;
    for (const t of trials) counts[t.state]++;
    let best: { number: number; value: number } | null = null;
    if (info.directions.length === 1) {
      const max = info.directions[0] === 'maximize';
      for (const t of trials) {
        if (t.state !== 'COMPLETE' || t.value === null) continue;
        if (!best || (max ? t.value > best.value : t.value < best.value)) best = { number: t.number, value: t.value };
      }
    }
    const peers = peersOf(info).peers;
    return {
      studyName: info.studyName,
      studyId: info.studyId,
      ref: refOf(info, all),
      directions: info.directions,
      createdAt: info.createdAt.getTime(),
      trials: trials.length,
      states: counts,
      best,
      peersOnline: peers.filter((p) => p.online).length,
      peersKnown: peers.length,
    };
  }

  function peersOf(info: StudyInfo) {
    const now = Date.now();
    const list: PeerInfo[] = storage.peers ? storage.peers(info.studyId) : [{ peerId: storage.ownerId, addresses: [], lastSeen: null, trialsRun: 0, self: true, online: true }];
    const stats = storage.stats?.();
    const connected = new Set(stats?.connectedPeers ?? []);
    const byOwner = new Map<string, { states: Record<string, number>; running: { number: number; startedAt: number | null }[] }>();
    for (const t of storage.getAllTrials(info.studyId)) {
      let e = byOwner.get(t.owner);
      if (!e) byOwner.set(t.owner, (e = { states: {}, running: [] }));
      e.states[t.state] = (e.states[t.state] ?? 0) + 1;
      if (t.state === 'RUNNING') e.running.push({ number: t.number, startedAt: t.datetimeStart?.getTime() ?? null });
    }
    const ids = new Set(list.map((p) => p.peerId));
    for (const owner of byOwner.keys()) if (!ids.has(owner)) list.push({ peerId: owner, addresses: [], lastSeen: null, trialsRun: 0, self: false, online: false });
    const replica = stats?.studies.find((s) => s.studyId === info.studyId) ?? null;
    const rejects = { ...(stats?.counters ?? {}) };
    return {
      now,
      offlineAfterMs,
      peers: list.map((p) => {
        const e = byOwner.get(p.peerId) ?? { states: {}, running: [] };
        const lastSeen = p.lastSeen?.getTime() ?? null;
        return {
          peerId: p.peerId,
          self: p.self,
          online: p.self || (lastSeen !== null && now - lastSeen < offlineAfterMs),
          connected: connected.has(p.peerId),
          lastSeen,
          addresses: p.addresses,
          trialsRun: Object.values(e.states).reduce((a, b) => a + b, 0),
          states: e.states,
          running: e.running,
          // What the peer advertises of its replica against ours (replicated storages), and what we rejected from it.
          replica: p.replica ?? (p.self ? 'self' : 'unknown'),
          digest: p.digest ?? null,
          changes: p.changes ?? null,
          rejects: p.rejects ?? null,
        };
      }),
      replica: replica ? { trials: replica.trials, pendingChanges: replica.pendingChanges, heads: replica.heads, changes: list.find((p) => p.self)?.changes ?? null } : null,
      rejects,
    };
  }

  // One worker thread computes importances, one job at a time, newest request per study first.
  let worker: Worker | null = null;
  let nextJob = 1;
  const jobs = new Map<number, (r: { importances?: Record<string, number>; ms?: number; error?: string }) => void>();
  const inFlight = new Map<string, Promise<unknown>>();
  const runJob = (job: Omit<ImportanceJob, 'id'>): Promise<{ importances?: Record<string, number>; ms?: number; error?: string }> => {
    if (!worker) {
      const script = new URL(`./importance-worker.${fromSource ? 'ts' : 'js'}`, import.meta.url);
      // From src/ (tsx, tests) the worker registers tsx's loader itself: hooks do not reach workers.
      worker = fromSource
        ? new Worker(`import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => { api.register(); return import(${JSON.stringify(script.href)}); });`, { eval: true })
        : new Worker(script);
      worker.unref();
      worker.on('message', (m: { id: number; importances?: Record<string, number>; ms?: number; error?: string }) => {
        jobs.get(m.id)?.(m);
        jobs.delete(m.id);
      });
      worker.on('error', (e) => {
        for (const j of jobs.values()) j({ error: e.message });
        jobs.clear();
        worker = null;
      });
    }
    const id = nextJob++;
    return new Promise((resolveJob) => {
      jobs.set(id, resolveJob);
      worker!.postMessage({ ...job, id });
    });
  };

  async function importances(info: StudyInfo, url: URL): Promise<unknown> {
    const objective = Number(url.searchParams.get('objective') ?? 0);
    if (!Number.isInteger(objective) || objective < 0 || objective >= info.directions.length) throw new DashboardError(`objective must be 0..${info.directions.length - 1}`);
    const trials = storage.getAllTrials(info.studyId);
    const complete = trials.filter((t) => t.state === 'COMPLETE');
    let kind = url.searchParams.get('evaluator') ?? 'auto';
    // fANOVA fits 64 deep trees (about 2.5 s at 1,000 trials here); past that PED-ANOVA answers in ~0.1 s.
    if (kind === 'auto') kind = complete.length <= 1000 ? 'fanova' : 'ped-anova';
    if (kind !== 'fanova' && kind !== 'mdi' && kind !== 'ped-anova') throw new DashboardError('evaluator must be one of auto, fanova, mdi, ped-anova');
    const version = storage.getVersion(info.studyId);
    const cacheKey = `${info.studyId}:${kind}:${objective}`;
    const hit = importanceCache.get(cacheKey);
    if (hit && hit.key === String(version)) return hit.body;
    const running = inFlight.get(cacheKey);
    if (running) return running;
    const p = runJob({ kind, directions: [...info.directions], trials: complete, objective }).then((r) => {
      inFlight.delete(cacheKey);
      if (r.error) throw new DashboardError(`importances failed: ${r.error}`);
      const body = { evaluator: kind, objective, completeTrials: complete.length, importances: r.importances, ms: r.ms };
      importanceCache.set(cacheKey, { key: String(version), body });
      return body;
    });
    inFlight.set(cacheKey, p);
    return p;
  }

  function stream(req: IncomingMessage, res: ServerResponse, info: StudyInfo): void {
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache, no-transform', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    res.socket?.setNoDelay(true);
    streams.add(res);
    const feed = feedOf(info);
    const write = (event: string, data: unknown): void => {
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    res.write('retry: 1000\n\n');
    res.write('event: snapshot\ndata: ');
    res.write(feed.snapshotJson());
    res.write('\n\n');
    write('peers', peersOf(info));
    const off = feed.subscribe((d) => write('delta', d));
    const peersTimer = setInterval(() => {
      try {
        write('peers', peersOf(info));
      } catch {
        /* the study was deleted or the storage closed; the page keeps what it has */
      }
    }, 1000);
    const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    const end = (): void => {
      off();
      clearInterval(peersTimer);
      clearInterval(keepAlive);
      streams.delete(res);
    };
    req.on('close', end);
    res.on('close', end);
  }

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? new DashboardError(`port ${port} on ${host} is in use; pass --port <another> (or --port 0 for any free port)`) : e),
    );
    server.listen(port, host, () => resolveListen());
  });
  // The first page load should not pay for reading and compressing 2 MB of scripts, nor for the
  // study's first snapshot: both are prepared once the server listens, off the request path.
  const warm = setImmediate(() => {
    const loads: Promise<unknown>[] = [webAsset('index.html'), webAsset('app.js'), webAsset('boot.js'), webAsset('app.css'), ...[...BROWSER_MODULES].map(browserModule)];
    const dir = plotlyModulesDir();
    if (dir) for (const f of readdirSync(dir)) if (/^(plotly|chunk-[A-Za-z0-9_-]+)\.js$/.test(f)) loads.push(plotlyModule(f));
    if (!dir) loads.push(plotlyAsset());
    for (const l of loads) l.catch(() => {});
    if (opening) {
      void Promise.all(loads)
        .then(() => {
          const info = closed ? null : storage.listStudies().find((s) => s.studyId === opening.studyId);
          if (info) feedOf(info).snapshotJson();
        })
        .catch(() => {}); // only a head start: a request builds what is missing
    }
  });
  let closed = false;
  const addr = server.address();
  const boundPort = typeof addr === 'object' && addr ? addr.port : port;
  const shownHost = host.includes(':') ? `[${host}]` : host;
  const path = openRef ? `/#/study/${encodeURIComponent(openRef)}/history` : '/';
  const url = `http://${shownHost}:${boundPort}${token ? `/?token=${encodeURIComponent(token)}${path === '/' ? '' : path.slice(1)}` : path}`;
  return {
    url,
    port: boundPort,
    host,
    token,
    close: async () => {
      closed = true;
      clearImmediate(warm);
      for (const t of timers) clearInterval(t);
      for (const f of feeds.values()) f.stop();
      await worker?.terminate();
      for (const s of streams) s.end();
      await new Promise<void>((r) => server.close(() => r()));
      server.closeAllConnections?.();
    },
  };
}

const STUDY_ID = /^s[0-9a-f]{24}$/;

/** The study `opts` opens the page on (by id, or by name), or null for the study list; throws DashboardError. */
function openingStudy(storage: Storage, opts: Pick<DashboardOptions, 'studyName' | 'studyId'>): StudyInfo | null {
  const list = () => storage.listStudies();
  if (opts.studyId !== undefined) {
    const info = list().find((s) => s.studyId === opts.studyId);
    if (!info) {
      const known = list().map((s) => `${s.studyName} (${s.studyId})`);
      throw new DashboardError(`no study with id ${opts.studyId} in this replica${known.length ? `; studies here: ${known.join(', ')}` : ' (it has no studies yet)'}`);
    }
    if (opts.studyName !== undefined && info.studyName !== opts.studyName) throw new DashboardError(`study ${opts.studyId} is named "${info.studyName}", not "${opts.studyName}"`);
    return info;
  }
  if (opts.studyName === undefined) return null;
  let info: StudyInfo | null;
  try {
    info = storage.getStudy(opts.studyName);
  } catch (e) {
    // Several studies of this name, none created or run here: the message lists the ids.
    if (e instanceof AmbiguousStudyError) throw new DashboardError(e.message);
    throw e;
  }
  if (!info) {
    const names = list().map((s) => s.studyName);
    throw new DashboardError(`no study named "${opts.studyName}" in this replica${names.length ? `; studies here: ${names.join(', ')}` : ' (it has no studies yet)'}`);
  }
  return info;
}

function cookie(req: IncomingMessage, name: string): string | null {
  const raw = req.headers.cookie;
  if (!raw) return null;
  for (const part of raw.split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === name) return decodeURIComponent(v.join('='));
  }
  return null;
}

function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  return h && h.startsWith('Bearer ') ? h.slice(7) : null;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, JSON.stringify(body));
}

function sendJson(res: ServerResponse, status: number, text: string | Buffer): void {
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(text);
}

function sendAsset(req: IncomingMessage, res: ServerResponse, a: Asset, immutable = false): void {
  const gz = /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''));
  res.writeHead(200, {
    'Content-Type': a.type,
    'Cache-Control': immutable ? 'public, max-age=86400' : 'no-cache',
    ...(gz ? { 'Content-Encoding': 'gzip' } : {}),
    Vary: 'Accept-Encoding',
  });
  res.end(req.method === 'HEAD' ? undefined : gz ? a.gz : a.body);
}
