/**
 * `peertune serve`: a peer driven by another program over stdio, one JSON request per line on stdin
 * and one JSON answer per line on stdout (logs go to stderr). It is how python/peertune_client.py
 * offers Optuna's study API: the Python process starts this command once, opens storages (in memory,
 * or a peer's data dir joined to others) and creates, loads and runs studies through it; the
 * objective itself runs in Python, so a trial costs a few round trips (ask, one per suggest, tell).
 *
 * Requests are {"op": ..., ...}; answers {"ok": true, ...} or {"ok": false, "error": "...",
 * "error_type": "<class name>"}. Handles: `storage`, `study` and `trial` are small integers this
 * process hands out. Numbers that JSON cannot carry (NaN, Infinity) travel as the strings "NaN",
 * "Infinity", "-Infinity". Trials come back in the CLI's snake_case JSON form (cli/format.ts). The
 * command exits when stdin closes (its parent is gone) or on {"op": "close"}, closing every storage.
 */
import type { Command } from 'commander';
import { createInterface } from 'node:readline';
import { setVerbosity, type LogLevel } from '../../logging.js';
import type { Distribution, ParamValue } from '../../distributions.js';
import { distributionFromWire } from '../../objectives/command.js';
import type { StudyDirection, StudyInfo, TrialState } from '../../storage/storage.js';
import { createStudy, loadStudy, type Study } from '../../study.js';
import type { Trial } from '../../trial.js';
import { subcommand } from '../args.js';
import { trialJson } from '../format.js';
import { createPruner, createSampler, storedSpec, type AlgorithmSpec } from '../registry.js';
import { findStudy, openStorage, type OpenedStorage } from '../storage.js';
import { PeertuneError } from '../../errors.js';
import { getCheckpointRequest, saveCheckpointRequest } from '../../objectives/checkpoint-ops.js';

export const SERVE_PROTOCOL = 'peertune-serve/1';

type Req = Record<string, unknown>;

class ServeError extends PeertuneError {
  override name = 'ValueError';
}

/** JSON's missing numbers, as the client sends them. */
function num(v: unknown): unknown {
  if (v === 'NaN') return NaN;
  if (v === 'Infinity') return Infinity;
  if (v === '-Infinity') return -Infinity;
  return v;
}

function wireNumber(v: number | null): number | string | null {
  if (v === null || Number.isFinite(v)) return v;
  return Number.isNaN(v) ? 'NaN' : v > 0 ? 'Infinity' : '-Infinity';
}

function str(req: Req, key: string): string {
  const v = req[key];
  if (typeof v !== 'string' || v === '') throw new ServeError(`"${key}" must be a non-empty string`);
  return v;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new ServeError(`${what} must be a list of strings`);
  return v as string[];
}

function spec(v: unknown, what: string): AlgorithmSpec | undefined {
  if (v === undefined || v === null) return undefined;
  const s = v as { name?: unknown; options?: unknown };
  if (!s || typeof s !== 'object' || typeof s.name !== 'string') throw new ServeError(`${what} must be {"name": ..., "options": {...}}`);
  const options = s.options ?? {};
  if (typeof options !== 'object' || Array.isArray(options)) throw new ServeError(`${what}.options must be an object`);
  return { name: s.name, options: options as Record<string, unknown> };
}

/** Trials with NaN/Infinity values made JSON-safe. */
function frozenWire(t: Parameters<typeof trialJson>[0]): Record<string, unknown> {
  const j = trialJson(t);
  j['value'] = wireNumber(t.value);
  j['values'] = t.values ? t.values.map(wireNumber) : null;
  j['intermediate_values'] = Object.fromEntries([...t.intermediateValues].map(([s, v]) => [String(s), wireNumber(v)]));
  return j;
}

class Server {
  private readonly storages = new Map<number, OpenedStorage>();
  /** Storages that joined or look for peers: a missing study may still arrive from them. */
  private readonly joined = new Set<number>();
  private readonly studies = new Map<number, Study>();
  private readonly trials = new Map<number, { study: Study; trial: Trial }>();
  private nextHandle = 1;

  private handle(): number {
    return this.nextHandle++;
  }

  private storage(req: Req): OpenedStorage {
    const s = this.storages.get(req['storage'] as number);
    if (!s) throw new ServeError(`no storage handle ${JSON.stringify(req['storage'])}`);
    return s;
  }

  private study(req: Req): Study {
    const s = this.studies.get(req['study'] as number);
    if (!s) throw new ServeError(`no study handle ${JSON.stringify(req['study'])}`);
    return s;
  }

  private trial(req: Req): { study: Study; trial: Trial } {
    const t = this.trials.get(req['trial'] as number);
    if (!t) throw new ServeError(`no trial handle ${JSON.stringify(req['trial'])} (it was told already, or never asked here)`);
    return t;
  }

  private studyAnswer(handle: number, study: Study): Req {
    return { study: handle, study_name: study.studyName, study_id: study.studyId, directions: study.directions };
  }

  /**
   * The study a request names: `study_id` (then `study_name`, if given, must agree), or `study_name`.
   * A name several studies share (none created or run here, issue 15 F3) answers AmbiguousStudyError
   * with their ids in `study_ids`.
   */
  private async find(opened: OpenedStorage, req: Req, waitSeconds: number, joining: boolean): Promise<StudyInfo> {
    const id = req['study_id'];
    const name = typeof req['study_name'] === 'string' && req['study_name'] !== '' ? (req['study_name'] as string) : undefined;
    if (id !== undefined && id !== null) {
      if (typeof id !== 'string' || !/^s[0-9a-f]{24}$/.test(id)) throw new ServeError(`"study_id" must be a study id (s followed by 24 hex digits), got ${JSON.stringify(id).slice(0, 60)}`);
      return findStudy(opened, { name, id }, waitSeconds, joining);
    }
    if (name === undefined) throw new ServeError('"study_name" (or "study_id") must be a non-empty string');
    try {
      return await findStudy(opened, name, waitSeconds, joining);
    } catch (e) {
      // findStudy words an ambiguous name as a CLI usage error; here it stays the storage's error, ids included.
      opened.storage.getStudy(name);
      throw e;
    }
  }

  private async open(opened: OpenedStorage, info: StudyInfo, req: Req): Promise<Study> {
    const samplerSpec = spec(req['sampler'], 'sampler') ?? storedSpec(info, 'sampler');
    const prunerSpec = spec(req['pruner'], 'pruner') ?? storedSpec(info, 'pruner');
    return loadStudy({
      studyName: info.studyName,
      studyId: info.studyId,
      storage: opened.storage,
      sampler: samplerSpec ? await createSampler(samplerSpec) : undefined,
      pruner: prunerSpec ? await createPruner(prunerSpec) : undefined,
    });
  }

  async dispatch(req: Req): Promise<Req> {
    switch (req['op']) {
      case 'hello':
        return { protocol: SERVE_PROTOCOL };
      case 'memory_storage': {
        const opened = await openStorage({ inMemory: true }, 'serve');
        const h = this.handle();
        this.storages.set(h, opened);
        return { storage: h };
      }
      case 'open_storage': {
        const listen = strings(req['listen'], 'listen');
        const join = strings(req['join'], 'join');
        const opened = await openStorage(
          {
            dataDir: str(req, 'data_dir'),
            join,
            listen: listen.length ? listen : join.length ? ['/ip4/0.0.0.0/tcp/0'] : undefined,
            mdns: req['mdns'] === true,
            swarmKey: typeof req['swarm_key'] === 'string' ? req['swarm_key'] : undefined,
            allowPeer: strings(req['allow_peers'], 'allow_peers'),
            // Read studies as if these peers' trials did not exist / only these authors' (issue 15 F7).
            ignorePeer: strings(req['exclude_peers'], 'exclude_peers'),
            trustPeer: strings(req['trust_peers'], 'trust_peers'),
          },
          'serve',
        );
        const h = this.handle();
        this.storages.set(h, opened);
        if (join.length > 0 || req['mdns'] === true) this.joined.add(h);
        return { storage: h, peer_id: opened.peerId, multiaddrs: opened.multiaddrs() };
      }
      case 'multiaddrs':
        return { multiaddrs: this.storage(req).multiaddrs(), peer_id: this.storage(req).peerId };
      case 'create_study': {
        const opened = this.storage(req);
        const directions = (req['directions'] as StudyDirection[] | undefined) ?? ['minimize'];
        const name = typeof req['study_name'] === 'string' ? req['study_name'] : undefined;
        if (req['study_id'] !== undefined && req['study_id'] !== null && req['load_if_exists'] !== true) {
          throw new ServeError('study_id chooses a study to load: pass it with load_if_exists=True, or use load_study()');
        }
        const joinedHere = this.joined.has(req['storage'] as number);
        // With study_id: that study (waiting for it like load_study when joined); else by name, where a
        // name several studies share is an AmbiguousStudyError listing their ids.
        let existing: StudyInfo | null | undefined = req['study_id'] !== undefined && req['study_id'] !== null ? await this.find(opened, req, joinedHere ? 60 : 0, joinedHere) : name ? opened.storage.getStudy(name) : undefined;
        if (name && !existing && req['load_if_exists'] === true && this.joined.has(req['storage'] as number) && opened.storage.waitForStudy) {
          // Workers started together all call create_study(load_if_exists=True): give the peers a
          // moment to hand over a study one of them created, instead of making a second one.
          existing = (await opened.storage.waitForStudy(name, 5000)) ?? undefined;
        }
        let study: Study;
        if (existing && req['load_if_exists'] === true) {
          study = await this.open(opened, existing, req);
        } else {
          // Optuna's defaults: TPE (NSGA-II with several objectives), median pruning for one objective.
          const samplerSpec = spec(req['sampler'], 'sampler') ?? { name: directions.length > 1 ? 'nsga2' : 'tpe', options: {} };
          const prunerSpec = spec(req['pruner'], 'pruner') ?? { name: directions.length > 1 ? 'nop' : 'median', options: {} };
          study = await createStudy({
            studyName: name,
            directions,
            storage: opened.storage,
            sampler: await createSampler(samplerSpec),
            pruner: await createPruner(prunerSpec),
          });
          // Stored with the study, so CLI workers that join later build the same algorithms.
          opened.storage.setStudySystemAttr(study.studyId, 'sampler', samplerSpec);
          opened.storage.setStudySystemAttr(study.studyId, 'pruner', prunerSpec);
          await opened.storage.flush();
        }
        const h = this.handle();
        this.studies.set(h, study);
        return this.studyAnswer(h, study);
      }
      case 'load_study': {
        const opened = this.storage(req);
        const joining = this.joined.has(req['storage'] as number);
        const wait = typeof req['wait'] === 'number' ? (req['wait'] as number) : 60;
        const info = await this.find(opened, req, wait, joining);
        const study = await this.open(opened, info, req);
        const h = this.handle();
        this.studies.set(h, study);
        return this.studyAnswer(h, study);
      }
      case 'delete_study': {
        const opened = this.storage(req);
        const info = await this.find(opened, req, 0, false);
        await opened.storage.deleteStudy(info.studyId);
        await opened.storage.flush();
        return {};
      }
      case 'study_names':
        return { study_names: this.storage(req).storage.listStudies().map((s) => s.studyName) };
      case 'study_info': {
        const study = this.study(req);
        const info = study.storage.listStudies().find((s) => s.studyId === study.studyId);
        return { user_attrs: study.userAttrs, system_attrs: info?.systemAttrs ?? {}, directions: study.directions, study_name: study.studyName };
      }
      case 'set_study_user_attr':
        this.study(req).setUserAttr(str(req, 'key'), req['value'] ?? null);
        return {};
      case 'ask': {
        const study = this.study(req);
        const fixed: Record<string, Distribution> = {};
        for (const [name, d] of Object.entries((req['fixed_distributions'] as Record<string, unknown> | undefined) ?? {})) fixed[name] = distributionFromWire(name, d);
        // optimize() in the client asks with admit: a scheduling pruner (PBT's populationSize) may say
        // wait or done, decided in the same step as the ask so two threads cannot take one last place.
        if (req['admit'] === true) {
          const turn = study.pruner.admit?.(study) ?? 'start';
          if (turn !== 'start') return { turn };
        }
        const trial = study.ask(fixed);
        const h = this.handle();
        this.trials.set(h, { study, trial });
        return { trial: h, number: trial.number, trial_id: trial.trialId, params: trial.params, datetime_start: trial.datetimeStart?.toISOString() ?? null };
      }
      case 'suggest': {
        const { trial } = this.trial(req);
        const name = str(req, 'name');
        return { value: trial.suggest(name, distributionFromWire(name, req['distribution'])) };
      }
      case 'report': {
        const { trial } = this.trial(req);
        trial.report(num(req['value']) as number, req['step'] as number);
        return { prune: trial.shouldPrune() };
      }
      case 'should_prune':
        return { prune: this.trial(req).trial.shouldPrune() };
      case 'save_checkpoint':
        return saveCheckpointRequest(this.trial(req).trial, req);
      case 'get_checkpoint':
        return getCheckpointRequest(this.trial(req).trial);
      case 'set_trial_user_attr':
        this.trial(req).trial.setUserAttr(str(req, 'key'), req['value'] ?? null);
        return {};
      case 'tell': {
        const study = this.study(req);
        let target: Trial | number;
        const h = req['trial'] as number | undefined;
        if (h !== undefined && this.trials.has(h)) target = this.trials.get(h)!.trial;
        else if (typeof req['number'] === 'number') target = req['number'] as number;
        else throw new ServeError('tell needs a trial handle from ask, or a trial number');
        const state = req['state'] as 'COMPLETE' | 'PRUNED' | 'FAIL' | undefined;
        const raw = req['values'];
        const values = raw === undefined || raw === null ? null : Array.isArray(raw) ? raw.map(num) : num(raw);
        if (req['skip_if_finished'] === true) {
          const number = typeof target === 'number' ? target : target.number;
          const t = study.trials.find((x) => x.number === number);
          if (t && t.state !== 'RUNNING' && t.state !== 'WAITING') {
            if (h !== undefined) this.trials.delete(h);
            return { trial: frozenWire(t) };
          }
        }
        const failReason = typeof req['fail_reason'] === 'string' ? req['fail_reason'] : undefined;
        const done = await study.tell(target, values as number | number[] | null, { state, failReason });
        if (h !== undefined) this.trials.delete(h);
        return { trial: frozenWire(done) };
      }
      case 'trials': {
        const study = this.study(req);
        const states = req['states'] as TrialState[] | undefined;
        const list = states ? study.getTrials({ states }) : study.trials;
        return { trials: list.map(frozenWire) };
      }
      case 'best_trial':
        return { trial: frozenWire(this.study(req).bestTrial) };
      case 'best_trials':
        return { trials: this.study(req).bestTrials.map(frozenWire) };
      case 'enqueue_trial': {
        const study = this.study(req);
        const params = req['params'] as Record<string, ParamValue>;
        await study.enqueueTrial(params, { userAttrs: (req['user_attrs'] ?? undefined) as Record<string, unknown> | undefined, skipIfExists: req['skip_if_exists'] === true });
        return {};
      }
      case 'set_verbosity':
        setVerbosity(str(req, 'level') as LogLevel);
        return {};
      default:
        throw new ServeError(`unknown op ${JSON.stringify(req['op'])}`);
    }
  }

  async closeAll(): Promise<void> {
    // The log lines of trials told last wait for their numbers to settle (Study.flushLog): written before the storages close.
    await Promise.all([...this.studies.values()].map((st) => st.flushLog()));
    for (const s of this.storages.values()) await s.close().catch(() => {});
    this.storages.clear();
  }
}

async function serveCommand(): Promise<void> {
  const server = new Server();
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  const write = (msg: Req) => process.stdout.write(JSON.stringify(msg) + '\n');
  // One request at a time, in order: the client waits for each answer anyway.
  for await (const line of rl) {
    if (line.trim() === '') continue;
    let req: Req;
    try {
      req = JSON.parse(line) as Req;
      if (!req || typeof req !== 'object' || Array.isArray(req)) throw new Error('not an object');
    } catch {
      write({ ok: false, error: `a request must be one JSON object per line, got ${JSON.stringify(line.slice(0, 200))}`, error_type: 'ValueError' });
      continue;
    }
    if (req['op'] === 'close') {
      await server.closeAll();
      write({ ok: true });
      return;
    }
    try {
      write({ ok: true, ...(await server.dispatch(req)) });
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      const ids = (e as { studyIds?: unknown }).studyIds;
      write({ ok: false, error: e.message, error_type: e.name, ...(Array.isArray(ids) ? { study_ids: ids } : {}) });
    }
  }
  await server.closeAll();
}

export function register(program: Command): void {
  subcommand(program, 'serve', 'a peer driven over stdio by JSON lines (what python/peertune_client.py starts for its study API)').action(() => serveCommand());
}
