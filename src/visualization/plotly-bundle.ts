/**
 * The Plotly the dashboard and writeHtml load: a custom bundle of Plotly's core and only the traces
 * the figures use (scatter is in the core; scattergl, bar, contour, parcoords, scatter3d), built by
 * `npm run build` from the plotly.js sources into dist/visualization/plotly.min.js. It is 2.2 MB
 * minified instead of the full bundle's 4.8 MB, and headless Chromium here evaluates it in about a
 * third of the time, which is most of a study page's first paint. Without the dev dependencies
 * (plotly.js, esbuild) the build skips it and the full plotly.js-dist-min bundle is used.
 *
 * The dashboard page loads a split build of the same traces instead (dist/visualization/plotly/, ES
 * modules): everything but 3-D scatter in the entry, 3-D scatter in a chunk the Pareto view imports on
 * first use. gl3d alone took about 300 ms of the full bundle's 550 ms evaluation in headless Chromium
 * here, all of it on the study page's first paint. writeHtml keeps the one-file bundle.
 */
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PLOTLY_TRACES = ['scattergl', 'bar', 'contour', 'parcoords', 'scatter3d'] as const;

const here = dirname(fileURLToPath(import.meta.url));
/** dist/visualization when running compiled, src/visualization under tsx. */
export const CUSTOM = [join(here, 'plotly.min.js'), resolve(here, '..', '..', 'dist', 'visualization', 'plotly.min.js')];

/** Loaded on first use by the dashboard's split build (the rest is in its entry). */
export const PLOTLY_LAZY_TRACES = ['scatter3d', 'parcoords', 'contour', 'bar'] as const;
/** The split build's directory: its entry is `plotly.js`, its chunks `chunk-<hash>.js`. */
export const MODULES = [join(here, 'plotly'), resolve(here, '..', '..', 'dist', 'visualization', 'plotly')];

/** Directory of the dashboard's split Plotly build, or null when it was not built (serve the one-file bundle). */
export function plotlyModulesDir(): string | null {
  return MODULES.find((d) => existsSync(join(d, 'plotly.js'))) ?? null;
}

/** Path of the Plotly bundle to serve or inline: the custom one when built, else plotly.js-dist-min. */
export function plotlyBundlePath(): string {
  return CUSTOM.find((p) => existsSync(p)) ?? createRequire(import.meta.url).resolve('plotly.js-dist-min/plotly.min.js');
}

// gl3d's typed-array pool imports Node's buffer; the browser never takes that path.
const NO_NODE_BUFFER = {
  name: 'no-node-buffer',
  setup(b: import('esbuild').PluginBuild) {
    b.onResolve({ filter: /^buffer$/ }, () => ({ path: 'buffer', namespace: 'shim' }));
    b.onLoad({ filter: /.*/, namespace: 'shim' }, () => ({ contents: 'module.exports = { Buffer: { isBuffer: function () { return false; } } };', loader: 'js' as const }));
  },
};

// gl-text asks for upstream regl, Plotly for its fork (2.1.1 and 2.1.2): one copy, 130 kB less to evaluate.
const ONE_REGL = { regl: '@plotly/regl' };

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
    alias: ONE_REGL,
    plugins: [NO_NODE_BUFFER],
  });
  return { bytes: (await stat(outFile)).size };
}

/** The dashboard's split build into `outDir` (emptied first); null without the dev dependencies. */
export async function buildPlotlyModules(outDir: string): Promise<{ bytes: number; files: string[] } | null> {
  const require = createRequire(import.meta.url);
  let esbuild: typeof import('esbuild');
  try {
    require.resolve('plotly.js/lib/core');
    esbuild = await import('esbuild');
  } catch {
    return null;
  }
  const eager = PLOTLY_TRACES.filter((t) => !(PLOTLY_LAZY_TRACES as readonly string[]).includes(t));
  const entry = [
    "import Plotly from 'plotly.js/lib/core';",
    ...eager.map((t, i) => `import t${i} from 'plotly.js/lib/${t}';`),
    `Plotly.register([${eager.map((_, i) => `t${i}`).join(', ')}]);`,
    // The page calls these before drawing a trace of that type.
    `Plotly.peertuneLazy = { ${PLOTLY_LAZY_TRACES.map((t) => `${t}: () => import('plotly.js/lib/${t}').then((m) => Plotly.register([m.default || m]))`).join(', ')} };`,
    'window.Plotly = Plotly;',
  ].join('\n');
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const resolveDir = dirname(require.resolve('plotly.js/package.json'));
  await esbuild.build({
    entryPoints: ['plotly'],
    bundle: true,
    splitting: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    define: { global: 'window' },
    outdir: outDir,
    entryNames: '[name]',
    chunkNames: 'chunk-[hash]',
    logLevel: 'error',
    legalComments: 'eof',
    alias: ONE_REGL,
    plugins: [
      {
        name: 'entry',
        setup(b) {
          b.onResolve({ filter: /^plotly$/ }, () => ({ path: 'plotly', namespace: 'entry' }));
          b.onLoad({ filter: /.*/, namespace: 'entry' }, () => ({ contents: entry, resolveDir, loader: 'js' }));
        },
      },
      NO_NODE_BUFFER,
    ],
  });
  const files = (await readdir(outDir)).filter((f) => f.endsWith('.js'));
  let bytes = 0;
  for (const f of files) bytes += (await stat(join(outDir, f))).size;
  return { bytes, files };
}
