/**
 * The Plotly the dashboard and writeHtml load: a custom bundle of Plotly's core and only the traces
 * the figures use (scatter is in the core; scattergl, bar, contour, parcoords, scatter3d), built by
 * `npm run build` from the plotly.js sources into dist/visualization/plotly.min.js. It is 2.2 MB
 * minified instead of the full bundle's 4.8 MB, and headless Chromium here evaluates it in about a
 * third of the time, which is most of a study page's first paint. Without the dev dependencies
 * (plotly.js, esbuild) the build skips it and the full plotly.js-dist-min bundle is used.
 */
import { existsSync } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PLOTLY_TRACES = ['scattergl', 'bar', 'contour', 'parcoords', 'scatter3d'] as const;

const here = dirname(fileURLToPath(import.meta.url));
/** dist/visualization when running compiled, src/visualization under tsx. */
const CUSTOM = [join(here, 'plotly.min.js'), resolve(here, '..', '..', 'dist', 'visualization', 'plotly.min.js')];

/** Path of the Plotly bundle to serve or inline: the custom one when built, else plotly.js-dist-min. */
export function plotlyBundlePath(): string {
  return CUSTOM.find((p) => existsSync(p)) ?? createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js');
}

export async function buildPlotlyBundle(outFile: string): Promise<{ bytes: number } | null> {
  const require = createRequire(import.meta.url);
  let esbuild: typeof import('esbuild');
  try {
    require.resolve('plotly.js/lib/core');
    esbuild = await import('esbuild');
  } catch {
    return null;
  }
  const entry = [
    "var Plotly = require('plotly.js/lib/core');",
    `Plotly.register([${PLOTLY_TRACES.map((t) => `require('plotly.js/lib/${t}')`).join(', ')}]);`,
    'window.Plotly = Plotly;',
  ].join('\n');
  await mkdir(dirname(outFile), { recursive: true });
  await esbuild.build({
    stdin: { contents: entry, resolveDir: dirname(require.resolve('plotly.js/package.json')), loader: 'js' },
    bundle: true,
    minify: true,
    format: 'iife',
    target: 'es2020',
    define: { global: 'window' },
    outfile: outFile,
    logLevel: 'error',
    legalComments: 'eof',
    // gl3d's typed-array pool imports Node's buffer; the browser never takes that path.
    plugins: [
      {
        name: 'no-node-buffer',
        setup(b) {
          b.onResolve({ filter: /^buffer$/ }, () => ({ path: 'buffer', namespace: 'shim' }));
          b.onLoad({ filter: /.*/, namespace: 'shim' }, () => ({ contents: 'module.exports = { Buffer: { isBuffer: function () { return false; } } };', loader: 'js' }));
        },
      },
    ],
  });
  return { bytes: (await stat(outFile)).size };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  // Always into dist/ (from src/ under tsx too), never next to the sources.
  const out = import.meta.url.endsWith('.ts') ? CUSTOM[1]! : CUSTOM[0]!;
  const r = await buildPlotlyBundle(out);
  console.log(r ? `plotly bundle: ${out} (${(r.bytes / 1e6).toFixed(2)} MB; ${PLOTLY_TRACES.join(', ')})` : 'plotly bundle: skipped (plotly.js or esbuild not installed); the dashboard serves plotly.js-dist-min');
}
