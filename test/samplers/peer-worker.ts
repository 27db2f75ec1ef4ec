/**
 * One peer as a child process for the sampler tests with real peers (test/samplers/peers.test.ts): it
 * opens a PeerStorage on a real data dir, creates or loads a study with the sampler named in its
 * config, and obeys JSON-line commands on stdin: `run` (n trials of a slow objective, recording what
 * was in flight at each suggestion), `dump` (the replica's trials) and `quit`.
 */
import readline from 'node:readline';
import { createStudy, GPSampler, loadStudy, setVerbosity, TPESampler, type Sampler, type Study, type Trial } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';

interface Config {
  dataDir: string;
  join?: string[];
  create?: boolean;
  studyName: string;
  sampler: 'gp' | 'motpe';
  seed: number;
}

setVerbosity('warning');
const cfg = JSON.parse(process.argv[2]!) as Config;
const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sampler(): Sampler {
  // Feasible when x1 <= 8: most of the space, so the constraint values are there to replicate.
  if (cfg.sampler === 'gp') return new GPSampler({ seed: cfg.seed, nStartupTrials: 4, constraintsFunc: (t) => [(t.params['x1'] as number) - 8] });
  return new TPESampler({ seed: cfg.seed, nStartupTrials: 4, multiObjectiveSplit: 'hypervolume' });
}

const directions = cfg.sampler === 'motpe' ? (['minimize', 'minimize'] as const) : (['minimize'] as const);
function objective(t: Trial): number | number[] {
  const x1 = t.suggestFloat('x1', -5, 10);
  const x2 = t.suggestFloat('x2', 0, 15);
  if (cfg.sampler === 'motpe') return [(x1 + 5) / 15, (x2 / 15 - 0.5) ** 2 + (1 - (x1 + 5) / 15) ** 2];
  const pi = Math.PI;
  return (x2 - (5.1 / (4 * pi * pi)) * x1 * x1 + (5 / pi) * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * pi)) * Math.cos(x1) + 10;
}

const storage = await openPeerStorage({ dataDir: cfg.dataDir, join: cfg.join, heartbeatIntervalMs: 200, staleAfterMs: 5000 });
const study: Study = cfg.create
  ? await createStudy({ studyName: cfg.studyName, storage, sampler: sampler(), directions: [...directions], loadIfExists: true })
  : await loadStudy({ studyName: cfg.studyName, storage, sampler: sampler() });
out({ ev: 'ready', addrs: storage.multiaddrs() });

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const cmd = JSON.parse(line) as { cmd: string; id: number; n?: number; sleepMs?: number };
  try {
    if (cmd.cmd === 'run') {
      const asked: { x: number[]; inFlight: { owner: string; x: number[] }[]; complete: number }[] = [];
      await study.optimize(async (t) => {
        const v = objective(t);
        const inFlight = study
          .getTrials({ states: ['RUNNING'] })
          .filter((o) => o.trialId !== t.trialId && typeof o.params['x1'] === 'number' && typeof o.params['x2'] === 'number')
          .map((o) => ({ owner: o.owner, x: [o.params['x1'] as number, o.params['x2'] as number] }));
        asked.push({ x: [t.params['x1'] as number, t.params['x2'] as number], inFlight, complete: study.getTrials({ states: ['COMPLETE'] }).length });
        await sleep(cmd.sleepMs ?? 0);
        return v;
      }, { nTrials: cmd.n });
      await storage.flush();
      out({ ev: 'ran', id: cmd.id, asked });
    } else if (cmd.cmd === 'dump') {
      out({ ev: 'dump', id: cmd.id, owner: storage.ownerId, trials: study.trials.map((t) => ({ owner: t.owner, state: t.state, params: t.params, constraints: t.systemAttrs['constraints'] ?? null })) });
    } else if (cmd.cmd === 'quit') {
      await storage.close();
      out({ ev: 'bye', id: cmd.id });
      process.exit(0);
    } else {
      out({ ev: 'error', id: cmd.id, message: `unknown command ${cmd.cmd}` });
    }
  } catch (e) {
    out({ ev: 'error', id: cmd.id, message: (e as Error).stack });
  }
}
