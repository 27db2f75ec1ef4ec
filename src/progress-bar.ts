/**
 * The progress bar of `optimize({ showProgressBar: true })`, as Optuna's: trials done (or seconds, for a
 * timeout-only run) and the best value so far, on stderr, with log lines printed above it while it runs.
 * Loaded only when asked for, so the entry point does not load cli-progress.
 */
import cliProgress from 'cli-progress';
import { setLogSink } from './logging.js';

export interface ProgressBar {
  /** One more trial finished; `best` is the text shown after the bar. */
  update(best: string): void;
  stop(): void;
}

/** A bar over `nTrials` trials, or over `timeout` seconds when no trial count is given; null if neither. */
export function progressBar(nTrials: number | undefined, timeout: number | undefined): ProgressBar | null {
  const total = nTrials ?? Math.ceil(timeout ?? 0);
  if (!total) return null;
  const byTime = nTrials === undefined;
  const multi = new cliProgress.MultiBar(
    { format: '{bar} {percentage}% | {value}/{total} {unit} | {best}', hideCursor: false, clearOnComplete: false, stream: process.stderr },
    cliProgress.Presets.shades_classic,
  );
  const bar = multi.create(total, 0, { unit: byTime ? 's' : 'trials', best: '' });
  const prevSink = setLogSink((line) => multi.log(line + '\n'));
  const t0 = Date.now();
  let done = 0;
  return {
    update: (best) => {
      done++;
      bar.update(byTime ? Math.min(total, Math.round((Date.now() - t0) / 1000)) : done, { best });
    },
    stop: () => {
      multi.stop();
      setLogSink(prevSink);
    },
  };
}
