/**
 * A worker peer as a child process for the dashboard tests: joins a peer, loads the study, and on
 * JSON-line commands tells trials with given values (so the test knows what the page must show) or
 * quits. Answers with JSON lines.
 */
import readline from 'node:readline';
import { loadStudy, setVerbosity } from '../../src/index.js';
import { openPeerStorage } from '../../src/storage/replicated/index.js';

setVerbosity('warning');
const cfg = JSON.parse(process.argv[2]!) as { dataDir: string; join: string[]; studyName: string };
const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');
const storage = await openPeerStorage({ dataDir: cfg.dataDir, join: cfg.join, heartbeatIntervalMs: 200 });
const study = await loadStudy({ studyName: cfg.studyName, storage });
out({ ev: 'ready', peerId: storage.peerId });
for await (const line of readline.createInterface({ input: process.stdin })) {
  const cmd = JSON.parse(line) as { cmd: string; id: number; value?: number; x?: number; hold?: boolean };
  try {
    if (cmd.cmd === 'trial') {
      const t = study.ask();
      t.suggestFloat('x', -10, 10);
      t.suggestInt('y', 0, 8);
      t.suggestCategorical('opt', ['sgd', 'adam', 'tree']);
      t.setUserAttr('from', 'worker');
      await storage.flush();
      if (cmd.hold) {
        out({ ev: 'running', id: cmd.id, number: t.number });
        continue;
      }
      await study.tell(t, cmd.value!);
      out({ ev: 'told', id: cmd.id, number: t.number, value: cmd.value, at: Date.now() });
    } else if (cmd.cmd === 'quit') {
      await storage.close();
      out({ ev: 'bye', id: cmd.id });
      process.exit(0);
    }
  } catch (e) {
    out({ ev: 'error', id: cmd.id, message: (e as Error).stack });
  }
}
