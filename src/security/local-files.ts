/**
 * Local data is private: a study's data directory holds every trial and the peer's private key, so it is
 * created readable by its owner only (0700) and a looser existing directory is reported. Used by the
 * replicated storage when it opens its data dir.
 */
import { chmod, mkdir, stat } from 'node:fs/promises';
import { logger } from '../logging.js';
import { PeertuneError } from '../errors.js';

export class DataDirError extends PeertuneError {
  override name = 'DataDirError';
}

/**
 * Creates `path` (and parents) with mode 0700, or checks an existing one: it must be a directory this
 * user can write; group/other access is tightened to 0700 when we own it, and warned about otherwise.
 */
export async function ensurePrivateDir(path: string, what = 'data directory'): Promise<void> {
  if (typeof path !== 'string' || path.length === 0) throw new DataDirError(`${what}: expected a directory path, got ${JSON.stringify(path)}`);
  try {
    await mkdir(path, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new DataDirError(`${what} ${path} exists and is not a directory`);
    if (code === 'EACCES' || code === 'EPERM') throw new DataDirError(`${what} ${path} cannot be created: permission denied`);
    throw err;
  }
  const st = await stat(path);
  if (!st.isDirectory()) throw new DataDirError(`${what} ${path} exists and is not a directory`);
  if (process.platform === 'win32' || (st.mode & 0o077) === 0) return;
  if (typeof process.getuid === 'function' && st.uid === process.getuid()) {
    // mkdir's mode is filtered by the umask and ignored for directories that already existed.
    await chmod(path, 0o700);
  } else {
    logger.warn(`${what} ${path} has mode 0${(st.mode & 0o777).toString(8)} and belongs to another user; other users may read the study`);
  }
}
