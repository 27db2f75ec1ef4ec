/**
 * The build step after `tsc` (`npm run build`): what the compiled dashboard and writeHtml serve
 * besides JavaScript compiled from src/.
 * - The page's own files (src/dashboard/web) are copied to dist/dashboard/web, next to the compiled
 *   server, so an install runs from dist/ alone.
 * - Plotly: the one-file custom bundle (writeHtml) and the dashboard's split build (see
 *   visualization/plotly-bundle.ts), when the dev dependencies that build them are installed.
 * Run from src/ under tsx it writes into dist/ too, never next to the sources.
 */
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildPlotlyBundle, buildPlotlyModules, CUSTOM, MODULES, PLOTLY_LAZY_TRACES, PLOTLY_TRACES } from '../visualization/plotly-bundle.js';

const here = dirname(fileURLToPath(import.meta.url));
const fromSource = import.meta.url.endsWith('.ts');
const root = resolve(here, '..', '..');
const webSrc = join(root, 'src', 'dashboard', 'web');
const webOut = join(root, 'dist', 'dashboard', 'web');

await rm(webOut, { recursive: true, force: true });
await mkdir(webOut, { recursive: true });
const files = (await readdir(webSrc)).filter((f) => /\.(html|js|css)$/.test(f));
for (const f of files) await cp(join(webSrc, f), join(webOut, f));
console.log(`dashboard web assets: ${files.length} files into ${webOut}`);

const out = fromSource ? CUSTOM[1]! : CUSTOM[0]!;
const r = await buildPlotlyBundle(out);
console.log(r ? `plotly bundle: ${out} (${(r.bytes / 1e6).toFixed(2)} MB; ${PLOTLY_TRACES.join(', ')})` : 'plotly bundle: skipped (plotly.js or esbuild not installed); writeHtml and the dashboard use plotly.js-dist-min');
const dir = fromSource ? MODULES[1]! : MODULES[0]!;
const m = await buildPlotlyModules(dir);
if (m) console.log(`plotly modules for the dashboard: ${dir} (${(m.bytes / 1e6).toFixed(2)} MB in ${m.files.length} files; ${PLOTLY_LAZY_TRACES.join(', ')} on first use)`);
