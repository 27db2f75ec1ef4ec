/**
 * `peertune dashboard`: a replica-only peer serving the read-only web dashboard (src/dashboard). It
 * reads a data dir, or a temporary replica synced from --join peers, and pushes every merge to the
 * open pages. Without --study-name the page opens on the study list.
 */
import type { Command } from 'commander';
import { DashboardError, startDashboard, validateDashboardOptions } from '../../dashboard/server.js';
import { logger } from '../../logging.js';
import { joining, networkOptions, nonNegativeInt, out, queryStudy, subcommand, withStorage, type CommonOpts } from '../args.js';
import { UsageError } from '../errors.js';

interface DashboardOpts extends CommonOpts {
  port: number;
  host: string;
  token?: string | true;
}

async function dashboardCommand(o: DashboardOpts): Promise<void> {
  // Refuse a public host without a token before opening anything.
  try {
    validateDashboardOptions({ host: o.host, port: o.port, token: o.token });
  } catch (e) {
    if (e instanceof DashboardError) throw new UsageError(e.message);
    throw e;
  }
  await withStorage(o, 'query', async (opened) => {
    if (o.studyName) await queryStudy(opened, o);
    let dash;
    try {
      dash = await startDashboard({ storage: opened.storage as Parameters<typeof startDashboard>[0]['storage'], studyName: o.studyName, port: o.port, host: o.host, token: o.token });
    } catch (e) {
      if (e instanceof DashboardError) throw new UsageError(e.message);
      throw e;
    }
    out(`dashboard: ${dash.url}`);
    if (dash.token) out('(the URL carries the access token: share it only with people who may see the study)');
    if (opened.peerId) logger.info(`Dashboard peer ${opened.peerId}${joining(o) ? ' joined the swarm' : ' reading its data dir'}; read-only, Ctrl-C to stop.`);
    await new Promise<void>((resolveStop) => {
      const stop = () => {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolveStop();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    await dash.close();
  });
}

export function register(program: Command): void {
  const cmd = subcommand(program, 'dashboard', 'serve a live, read-only web dashboard of a replica (plots, importances, trials, peers)')
    .option('--study-name <name>', 'open on this study (default: the study list)')
    .option('--port <port>', 'HTTP port (0 = any free port)', nonNegativeInt, 8080)
    .option('--host <host>', 'address to bind; anything but loopback needs --token', '127.0.0.1')
    .option('--token [secret]', 'access token required by every request (alone: generate one); the printed URL carries it');
  networkOptions(cmd, 'query').action((o: DashboardOpts) => dashboardCommand(o));
}
