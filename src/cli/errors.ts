/**
 * How the command reports failure: a user mistake (bad flag value, unknown study, a data dir in use)
 * is one line on stderr and a non-zero exit, never a stack trace. Errors are told apart by class: a
 * `PeertuneError` whose `userFacing` is set carries a message written for users; anything else is a
 * bug or an error of the objective, shown with its class name.
 */
import { PeertuneError } from '../errors.js';

/** A mistake in how the command was called; exit code 2. */
export class UsageError extends PeertuneError {
  override name = 'UsageError';
}

export function exitCodeFor(err: unknown): number {
  return err instanceof UsageError ? 2 : 1;
}

function userFacing(err: Error): boolean {
  return err instanceof PeertuneError && err.userFacing;
}

/** One line describing the error, for stderr. */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const msg = err.message.split('\n')[0] ?? '';
    if (userFacing(err)) return msg;
    const code = (err as { code?: unknown }).code;
    if (code === 'EADDRINUSE') return `${msg}; pass --listen /ip4/0.0.0.0/tcp/0 to pick a free port`;
    if (code === 'ENOENT' || code === 'EACCES') return msg;
    return `${err.name}: ${msg}`;
  }
  return String(err);
}
