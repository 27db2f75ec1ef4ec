/**
 * A module objective for `peertune worker objective.ts`: a .js/.mjs/.cjs file imported directly, or a
 * .ts file through tsx; its default export (or `export const objective`) is the objective.
 */
import { existsSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Objective } from '../study.js';
import { TrialPruned, type Trial } from '../trial.js';
import { UsageError } from './errors.js';

export async function loadModuleObjective(file: string): Promise<Objective> {
  const abs = resolve(file);
  const ext = extname(abs);
  if (!['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'].includes(ext)) {
    throw new UsageError(`objective file ${file} must be .js, .mjs, .cjs or .ts; to run another program per trial, put it after --, e.g. peertune worker ... -- python3 ${file}`);
  }
  if (!existsSync(abs)) throw new UsageError(`objective file ${file} does not exist`);
  let mod: Record<string, unknown>;
  if (['.ts', '.mts', '.cts'].includes(ext)) {
    let tsImport: (specifier: string, parent: string) => Promise<unknown>;
    try {
      ({ tsImport } = (await import('tsx/esm/api')) as { tsImport: typeof tsImport });
    } catch {
      throw new UsageError(`running a .ts objective needs the tsx package (npm install tsx), or compile ${file} to .js first`);
    }
    mod = (await tsImport(pathToFileURL(abs).href, import.meta.url)) as Record<string, unknown>;
  } else {
    mod = (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  }
  let fn = mod['default'];
  // A CommonJS module or a TS file loaded through interop may nest the default export once more.
  if (fn && typeof fn === 'object' && typeof (fn as { default?: unknown }).default === 'function') fn = (fn as { default: unknown }).default;
  if (typeof fn !== 'function') fn = mod['objective'];
  if (typeof fn !== 'function') {
    throw new UsageError(`${file} has no objective: export default function objective(trial) { ... } (or export const objective)`);
  }
  const objective = fn as Objective;
  return async (trial: Trial) => {
    try {
      return await objective(trial);
    } catch (err) {
      // The module may import TrialPruned from another copy of peertune (src vs dist); honour it by name.
      if (err instanceof Error && err.name === 'TrialPruned' && !(err instanceof TrialPruned)) throw new TrialPruned(err.message);
      throw err;
    }
  };
}
