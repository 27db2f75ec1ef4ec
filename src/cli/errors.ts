/**
 * How the command reports failure: a user mistake (bad flag value, unknown study, a data dir in use)
 * is one line on stderr and a non-zero exit, never a stack trace. Library errors that are already
 * written for users (bad distribution, unknown study, duplicated study) are shown the same way.
 */

/** A mistake in how the command was called; exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Library errors whose messages are written for users (shown as one line, exit code 1). */
const USER_FACING = new Set([
  'StudyUsageError',
  'DistributionError',
  'StorageError',
  'DuplicatedStudyError',
  'StudyNotFoundError',
  'ExportFormatError',
  'SwarmKeyError',
  'AllowlistError',
  'DataDirError',
  'CommandObjectiveError',
]);

export function exitCodeFor(err: unknown): number {
  return err instanceof UsageError ? 2 : 1;
}

/** One line describing the error, for stderr. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const msg = err.message.split('\n')[0] ?? '';
    if (err instanceof UsageError || USER_FACING.has(err.name)) return msg;
    const code = (err as { code?: unknown }).code;
    if (code === 'EADDRINUSE') return `${msg}; pass --listen /ip4/0.0.0.0/tcp/0 to pick a free port`;
    if (code === 'ENOENT' || code === 'EACCES') return msg;
    return `${err.name}: ${msg}`;
  }
  return String(err);
}
