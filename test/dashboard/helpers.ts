/**
 * Shared set-up of the dashboard tests: studies of the shapes the issue names (single-objective with
 * a conditional space, pruned-heavy, 2 and 3 objectives) in a real PeerStorage on a temp data dir,
 * headless Chromium through playwright-core, and a worker peer process.
 */
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, RandomSampler, TrialPruned, type Study } from '../../src/index.js';
import type { PeerStorage } from '../../src/storage/replicated/index.js';
import { PeerProcess } from '../fixtures/peer-process.js';

export const CHROMIUM = '/usr/bin/chromium';
export const noChromium = existsSync(CHROMIUM) ? false : `${CHROMIUM} is absent (apt install chromium); the dashboard browser tests need it`;

export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  // SwiftShader gives WebGL (parcoords, scattergl) without a GPU.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--enable-unsafe-swiftshader', '--use-angle=swiftshader'] });
}

export async function tempDir(prefix = 'peertune-dash-'): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), prefix));
}

/** Single objective, conditional space (depth only for opt=tree), intermediate values, some PRUNED and FAIL. */
export async function singleStudy(storage: PeerStorage, name: string, n: number): Promise<Study> {
  const study = await createStudy({ studyName: name, storage, sampler: new RandomSampler({ seed: 11 }) });
  await study.optimize(
    (t) => {
      const x = t.suggestFloat('x', -10, 10);
      const y = t.suggestInt('y', 0, 8);
      const opt = t.suggestCategorical('opt', ['sgd', 'adam', 'tree']);
      const lr = t.suggestFloat('lr', 1e-4, 1, { log: true });
      let v = (x - 2) ** 2 + y + (opt === 'adam' ? 0 : 3) + lr;
      if (opt === 'tree') v += t.suggestInt('depth', 1, 6);
      t.setUserAttr('fold', t.number % 3);
      for (let s = 0; s < 5; s++) t.report(v + 5 - s, s);
      if (t.number % 9 === 4) throw new TrialPruned();
      if (t.number % 13 === 7) throw new Error('diverged');
      return v;
    },
    { nTrials: n, catch: (e) => !(e instanceof TrialPruned) },
  );
  return study;
}

export async function prunedStudy(storage: PeerStorage, name: string, n: number): Promise<Study> {
  const study = await createStudy({ studyName: name, storage, sampler: new RandomSampler({ seed: 5 }) });
  await study.optimize(
    (t) => {
      const a = t.suggestFloat('a', 0, 1);
      for (let s = 0; s < 10; s++) {
        t.report(a * (10 - s), s);
        if (s === 3 && t.number % 4 !== 0) throw new TrialPruned();
      }
      return a;
    },
    { nTrials: n },
  );
  return study;
}

export async function multiStudy(storage: PeerStorage, name: string, n: number, m: 2 | 3): Promise<Study> {
  const directions = m === 2 ? (['minimize', 'maximize'] as const) : (['minimize', 'minimize', 'minimize'] as const);
  const study = await createStudy({ studyName: name, storage, directions: [...directions], sampler: new RandomSampler({ seed: 3 }) });
  await study.optimize(
    (t) => {
      const a = t.suggestFloat('a', 0, 1);
      const b = t.suggestFloat('b', 0, 1);
      if (m === 2) return [a, 1 - (1 - a) ** 2 * b];
      const c = t.suggestFloat('c', 0, 1);
      const s = a + b + c || 1;
      return [a / s + b, b / s + c, c / s + a];
    },
    { nTrials: n },
  );
  return study;
}

/** A worker peer process (test/dashboard/peer-process.ts) joined to the dashboard's replica. */
export class WorkerPeer extends PeerProcess {
  constructor(cfg: { dataDir: string; join: string[]; studyName: string }) {
    super(path.join(import.meta.dirname, 'peer-process.ts'), cfg);
  }
}
