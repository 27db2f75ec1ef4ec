/**
 * Private swarms: the pre-shared key that libp2p's pnet connection protector needs before any peer can
 * even finish a connection to another. A key is the 95-byte text libp2p (and IPFS) use,
 * `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>`; it lives in a file readable by its owner only and is
 * never printed. pnet wraps TCP connections, so private studies listen on TCP only (not QUIC/WebRTC).
 */
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { preSharedKey } from '@libp2p/pnet';
import { logger } from '../logging.js';
import { PeertuneError } from '../errors.js';

const HEADER = '/key/swarm/psk/1.0.0/';
const CODEC = '/base16/';
const KEY_BYTES = 32;

export class SwarmKeyError extends PeertuneError {
  override name = 'SwarmKeyError';
}

/** A fresh random swarm key in libp2p's pnet text format (95 bytes). */
export function generateSwarmKey(): Uint8Array {
  return encode(randomBytes(KEY_BYTES).toString('hex'));
}

function encode(hex: string): Uint8Array {
  return new TextEncoder().encode(`${HEADER}\n${CODEC}\n${hex}`);
}

/**
 * Checks a swarm key and returns it in the canonical form pnet expects (no trailing newline, `\n` line
 * ends, lower-case hex). Accepts what other tools write: CRLF line ends, a trailing newline, upper-case hex.
 * `where` names the source (a file path, an option) in the error.
 */
export function parseSwarmKey(key: Uint8Array | string, where = 'swarm key'): Uint8Array {
  if (typeof key !== 'string' && !(key instanceof Uint8Array)) {
    throw new SwarmKeyError(`${where}: expected the key's bytes (Uint8Array) or text, got ${typeof key}`);
  }
  const text = typeof key === 'string' ? key : new TextDecoder('utf-8', { fatal: false }).decode(key);
  const lines = text.replace(/^\uFEFF/, '').trim().split(/\r\n|\r|\n/).map((l) => l.trim());
  const expected = `expected 3 lines: "${HEADER}", "${CODEC}" and 64 hex digits (make one with \`peertune create-study --private\` or generateSwarmKey())`;
  if (lines.length !== 3) throw new SwarmKeyError(`${where}: not a swarm key (${lines.length} line(s)); ${expected}`);
  if (lines[0] !== HEADER) throw new SwarmKeyError(`${where}: first line must be "${HEADER}"; ${expected}`);
  if (lines[1] !== CODEC) {
    throw new SwarmKeyError(`${where}: only the ${CODEC} encoding is supported, the key says "${lines[1]!.slice(0, 40)}"; ${expected}`);
  }
  const hex = lines[2]!;
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new SwarmKeyError(`${where}: the key must be exactly 64 hex digits (32 bytes), found ${hex.length} character(s)${/^[0-9a-fA-F]*$/.test(hex) ? '' : ' including non-hex ones'}; ${expected}`);
  }
  return encode(hex.toLowerCase());
}

/**
 * Writes a swarm key readable by its owner only (0600), creating the parent directory 0700 if needed.
 * Refuses to replace an existing file unless `overwrite` is set: replacing a key silently would lock
 * every other peer of the study out.
 */
export async function writeSwarmKeyFile(path: string, key: Uint8Array, opts: { overwrite?: boolean } = {}): Promise<void> {
  const canonical = parseSwarmKey(key, 'writeSwarmKeyFile(key)');
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, canonical, { mode: 0o600, flag: opts.overwrite ? 'w' : 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new SwarmKeyError(`swarm key file ${path} already exists; refusing to overwrite it (other peers may use that key). Remove it first or pick another path.`);
    }
    throw err;
  }
  // The mode given to writeFile only applies when the file is created, and the umask may not cover it.
  await chmod(path, 0o600);
}

/**
 * Reads and checks a swarm key file. Missing or malformed files are errors naming the path; a file
 * that group or others can read is accepted with a warning (the key is the only thing keeping
 * strangers out of the swarm).
 */
export async function readSwarmKeyFile(path: string): Promise<Uint8Array> {
  let bytes: Buffer;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new SwarmKeyError(`swarm key file ${path} is not a regular file`);
    if (st.size > 4096) throw new SwarmKeyError(`swarm key file ${path} is ${st.size} bytes; a swarm key is 95 bytes`);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      logger.warn(`swarm key file ${path} has mode 0${(st.mode & 0o777).toString(8)}; other users can read it. Run: chmod 600 ${path}`);
    }
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new SwarmKeyError(`swarm key file ${path} does not exist; copy the key file from a peer of the study (it was written by \`peertune create-study --private\`)`);
    }
    if (code === 'EACCES') throw new SwarmKeyError(`swarm key file ${path} is not readable by this user`);
    throw err;
  }
  return parseSwarmKey(bytes, `swarm key file ${path}`);
}

/** How a connection failed the private-swarm handshake (counted as `pnet:<reason>`, docs/errors.md). */
export type HandshakeRejectReason = 'no-nonce' | 'no-handshake' | 'bad-key';

export interface SwarmProtectorOptions {
  /**
   * After the nonces, the remote's first bytes must arrive within this long (default 2000 ms; pnet
   * itself gives the nonce 1 s). A connection that sends a nonce and then nothing holds no slot longer.
   */
  handshakeTimeoutMs?: number;
  /** Called for every connection closed for failing the handshake. */
  onReject?: (reason: HandshakeRejectReason) => void;
}

/**
 * The first bytes either side of a libp2p connection receives: multistream-select's header, length
 * prefixed (the dialer sends it first; the listener answers with it). Decrypted with the wrong swarm
 * key they are noise, so this is the key check pnet itself lacks.
 */
const MULTISTREAM_HEADER = Uint8Array.from([19, ...new TextEncoder().encode('/multistream/1.0.0\n')]);

type Protected = Awaited<ReturnType<ReturnType<ReturnType<typeof preSharedKey>>['protect']>>;

/**
 * The libp2p `connectionProtector` for a swarm key (checked first, with a clearer error than pnet's).
 * pnet accepts any 24 bytes as the remote's nonce and cannot tell a wrong key until the next layer
 * reads garbage, so a stranger without the key could hold one of libp2p's few pending-connection slots
 * for the whole upgrade timeout by sending a nonce and nothing else (issue 15 F5). Here the remote's
 * first decrypted bytes must be multistream-select's header, within `handshakeTimeoutMs`: otherwise the
 * connection is closed at once and counted.
 */
export function swarmProtector(key: Uint8Array, opts: SwarmProtectorOptions = {}): ReturnType<typeof preSharedKey> {
  const pnet = preSharedKey({ psk: parseSwarmKey(key, 'swarmKey') });
  const timeoutMs = opts.handshakeTimeoutMs ?? 2000;
  const reject = opts.onReject ?? (() => {});
  return (components) => {
    const inner = pnet(components);
    return {
      [Symbol.toStringTag]: '@libp2p/pnet',
      async protect(conn, options) {
        let p: Protected;
        try {
          p = await inner.protect(conn, options);
        } catch (e) {
          reject('no-nonce');
          conn.abort(e as Error);
          throw e;
        }
        return guardFirstBytes(p, conn, timeoutMs, reject);
      },
    } as ReturnType<ReturnType<typeof preSharedKey>>;
  };
}

function guardFirstBytes(p: Protected, raw: Parameters<ReturnType<ReturnType<typeof preSharedKey>>['protect']>[0], timeoutMs: number, reject: (r: HandshakeRejectReason) => void): Protected {
  let checked = false;
  let failed = false;
  const fail = (reason: HandshakeRejectReason, msg: string): Error => {
    const err = new SwarmKeyError(msg);
    if (!failed) {
      failed = true;
      reject(reason);
      raw.abort(err);
    }
    return err;
  };
  // The timer fires in the timers phase; setImmediate runs after the poll phase, so bytes that arrived
  // while this process was busy are read before the verdict (a slow event loop does not fail honest peers).
  const timer = setTimeout(() => setImmediate(() => {
    if (!checked) fail('no-handshake', `no private-swarm handshake within ${timeoutMs} ms`);
  }), timeoutMs);
  timer.unref();
  const source = p.source;
  async function* guarded(): AsyncGenerator<Uint8Array> {
    const head: Uint8Array[] = [];
    let have = 0;
    try {
      for await (const chunk of source) {
        const bytes = chunk.subarray();
        if (checked) {
          yield bytes;
          continue;
        }
        head.push(bytes);
        have += bytes.byteLength;
        if (have < MULTISTREAM_HEADER.byteLength) continue;
        const all = Buffer.concat(head);
        if (!all.subarray(0, MULTISTREAM_HEADER.byteLength).equals(MULTISTREAM_HEADER)) throw fail('bad-key', 'the remote does not hold this swarm key (its first bytes do not decrypt to a libp2p handshake)');
        checked = true;
        clearTimeout(timer);
        yield all;
      }
    } finally {
      clearTimeout(timer);
    }
  }
  return { ...p, source: guarded() } as Protected;
}
