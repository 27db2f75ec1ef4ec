/**
 * One checkpointing peer as a child process, for the copy-limit tests (issue 15: a member asking us to
 * hold copies): it opens a PeerStorage (with `ownerQuota` from its config), creates or loads one study
 * with `checkpointConfig { numToKeep: 100, minReplicas }`, and obeys JSON-line commands:
 * - `save {n, bytes}`: one trial saving `n` checkpoints of `bytes` random bytes each, then told.
 * - `refs`: every trial's checkpoint references (owner, hash, size, holders).
 * - `held {owner}`: bytes and count of blobs in this peer's store that `owner`'s references need.
 * - `partials`: the partial downloads in the store's tmp dir.
 * - `fakePartial {hash, bytes, ageMs}`: writes a partial download of `hash`, last written `ageMs` ago.
 * - `slow {frameBytes, everyMs}`: from now on this peer serves blobs that slowly (everyMs 0: at full
 *   speed, through its own handler); what a member trickling its blobs does.
 * - `stats`: the replica's counters.
 */
import readline from 'node:readline';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createStudy, loadStudy, RandomSampler, setVerbosity, type Study } from '../../src/index.js';
import { BlobStore } from '../../src/checkpoints/blob-store.js';
import { BLOB_PROTOCOL } from '../../src/checkpoints/transfer.js';
import { frame, pack, readFrames, unpackUntrusted, asObject } from '../../src/net/wire.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';
import { internalsOf } from '../../src/storage/replicated/replica.js';

interface Config {
  dataDir: string;
  join?: string[];
  create?: boolean;
  studyName: string;
  minReplicas?: number;
  ownerQuota?: { checkpointBytes?: number };
}

setVerbosity((process.env['PEERTUNE_LOG_LEVEL'] as 'warning') ?? 'error');
const cfg = JSON.parse(process.argv[2]!) as Config;
const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');

const storage = await openPeerStorage({ dataDir: cfg.dataDir, join: cfg.join, heartbeatIntervalMs: 200, staleAfterMs: 2000, ownerQuota: cfg.ownerQuota });
const opts = { studyName: cfg.studyName, storage, sampler: new RandomSampler({ seed: 1 }), checkpointConfig: { numToKeep: 100, minReplicas: cfg.minReplicas ?? 1 } };
if (!cfg.create) await storage.waitForStudy(cfg.studyName);
const study: Study = cfg.create ? await createStudy({ ...opts, loadIfExists: true }) : await loadStudy(opts);
const store = await BlobStore.open(storage.checkpointDir);
const work = await mkdtemp(path.join(os.tmpdir(), 'pt-copy-peer-'));
out({ ev: 'ready', peerId: storage.peerId, addrs: storage.multiaddrs() });

async function installSlowServer(frameBytes: number, everyMs: number): Promise<void> {
  const libp2p = internalsOf.get(storage)!.ctx.node!.libp2p;
  await libp2p.unhandle(BLOB_PROTOCOL);
  await libp2p.handle(
    BLOB_PROTOCOL,
    ({ stream }) => {
      void (async () => {
        const frames = readFrames(stream.source, 512);
        const first = await frames.next();
        if (first.done) return;
        const req = asObject(unpackUntrusted(first.value, { maxBytes: 512, maxNodes: 8 }), 'blob request');
        const bytes = await readFile(store.pathOf(String(req['h']))).catch(() => null);
        await stream.sink(
          (async function* () {
            if (!bytes) {
              yield frame(pack({ ok: false, e: 'not held' }));
              return;
            }
            yield frame(pack({ ok: true, size: bytes.byteLength }));
            for (let at = Number(req['o']); at < bytes.byteLength; at += frameBytes) {
              if (everyMs > 0) await new Promise((r) => setTimeout(r, everyMs));
              yield frame(bytes.subarray(at, Math.min(bytes.byteLength, at + frameBytes)));
            }
          })(),
        );
      })().catch(() => stream.abort(new Error('slow server')));
    },
    { maxInboundStreams: 32 },
  );
}

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  const cmd = JSON.parse(line) as { cmd: string; id: number; n?: number; bytes?: number; owner?: string; frameBytes?: number; everyMs?: number; hash?: string; ageMs?: number };
  try {
    switch (cmd.cmd) {
      case 'save': {
        const trial = study.ask();
        const hashes: string[] = [];
        for (let i = 0; i < (cmd.n ?? 1); i++) {
          const f = path.join(work, `ck-${trial.trialId.replace(/[^A-Za-z0-9]/g, '')}-${i}.bin`);
          await writeFile(f, randomBytes(cmd.bytes ?? 1024));
          hashes.push((await trial.saveCheckpoint(f, { step: i })).hash);
        }
        await study.tell(trial, 0);
        await storage.flush();
        out({ ev: 'saved', id: cmd.id, trialId: trial.trialId, hashes });
        break;
      }
      case 'refs':
        out({ ev: 'refs', id: cmd.id, refs: study.trials.flatMap((t) => t.checkpoints.map((r) => ({ owner: t.owner, trialId: t.trialId, hash: r.hash, size: r.size, holders: r.holders }))) });
        break;
      case 'held': {
        const need = new Set(study.trials.filter((t) => t.owner === cmd.owner).flatMap((t) => t.checkpoints.map((r) => r.hash)));
        let bytes = 0;
        let count = 0;
        for (const h of await store.list()) {
          if (!need.has(h)) continue;
          bytes += (await store.sizeOf(h)) ?? 0;
          count++;
        }
        out({ ev: 'held', id: cmd.id, bytes, count });
        break;
      }
      case 'partials':
        out({ ev: 'partials', id: cmd.id, files: (await readdir(store.tmpDir)).filter((f) => f.endsWith('.partial')) });
        break;
      case 'fakePartial': {
        const f = path.join(store.tmpDir, `${cmd.hash}.partial`);
        await writeFile(f, randomBytes(cmd.bytes ?? 1024));
        const t = (Date.now() - (cmd.ageMs ?? 0)) / 1000;
        await utimes(f, t, t);
        out({ ev: 'faked', id: cmd.id });
        break;
      }
      case 'slow':
        await installSlowServer(cmd.frameBytes ?? 1 << 20, cmd.everyMs ?? 0);
        out({ ev: 'slow', id: cmd.id });
        break;
      case 'stats':
        out({ ev: 'stats', id: cmd.id, counters: storage.stats().counters });
        break;
      case 'quit':
        await storage.close();
        out({ ev: 'bye', id: cmd.id });
        process.exit(0);
    }
  } catch (e) {
    out({ ev: 'error', id: cmd.id, message: (e as Error).stack ?? String(e) });
  }
}
