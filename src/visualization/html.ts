/**
 * writeHtml: one figure as a self-contained HTML file (Plotly inlined, no network requests), so a
 * plot made on a cluster node opens on a laptop with no server and no internet.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Figure } from './figures.js';
import { plotlyBundlePath } from './plotly-bundle.js';

let plotlySource: Promise<string> | null = null;

function plotly(): Promise<string> {
  plotlySource ??= readFile(plotlyBundlePath(), 'utf8');
  return plotlySource;
}

/** Text safe inside a <script> element (no closing tag, no HTML comment openers). */
function scriptSafe(text: string): string {
  return text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

export async function figureHtml(figure: Figure, opts: { title?: string } = {}): Promise<string> {
  const title = opts.title ?? String((figure.layout['title'] as { text?: string } | undefined)?.text ?? 'peertune plot');
  const esc = title.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
  const fig = JSON.stringify({ data: figure.data, layout: { autosize: true, ...figure.layout } });
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc}</title>
<style>html,body{margin:0;height:100%}#plot{width:100%;height:100vh}</style></head>
<body><div id="plot"></div>
<script>${scriptSafe(await plotly())}</script>
<script>const fig = ${scriptSafe(fig)}; Plotly.newPlot('plot', fig.data, fig.layout, { responsive: true, displaylogo: false });</script>
</body></html>
`;
}

export async function writeHtml(figure: Figure, path: string, opts: { title?: string } = {}): Promise<void> {
  await writeFile(path, await figureHtml(figure, opts));
}
