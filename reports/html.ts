/**
 * The model report as one self-contained HTML page: inline CSS, the plots as inline
 * SVG drawn here in Node, no script and nothing fetched (its Content-Security-Policy
 * forbids it), so it opens from a file, an e-mail or the server alike.
 */
import { calibrationSpec, confusionSpec, distributionSpec, lossSpec, rocSpec } from './charts.ts';
import type { ModelReportData } from './model-report-data.ts';
import { renderSvg } from './svg.ts';

/** The plot sections every report has (a section whose data is missing says why instead). */
export const PLOT_SECTIONS = ['roc', 'calibration', 'confusion', 'loss', 'distributions'] as const;

export async function renderModelReport(data: ModelReportData): Promise<string> {
  const title = `${data.model} v${data.version}`;
  const plots = await plotSections(data);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · model report</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>${esc(data.model)} <span class="version">v${data.version}</span></h1>
<p class="sub">${esc(data.outputKind === 'binary_classifier' ? 'binary classifier' : 'regressor')} of <b>${esc(data.label)}</b> · ${data.family === 'gbdt' ? 'gradient-boosted trees' : 'MLP'} · registered ${esc(when(data.registeredAt))}${data.aliases.length ? ` · aliases: ${data.aliases.map((a) => `<span class="alias">${esc(a)}</span>`).join(' ')}` : ''}</p>
${data.description ? `<p class="sub">${esc(data.description)}</p>` : ''}
</header>
<main>
<section id="metrics"><h2>Metrics <small>test split, as registered</small></h2>${metricsTable(data.metrics)}</section>
<div class="grid">
${plots.roc}
${plots.calibration}
${plots.confusion}
${plots.loss}
</div>
${plots.distributions}
<section id="lineage"><h2>Lineage</h2>${lineageTable(data)}</section>
</main>
<footer>Generated ${esc(when(data.generatedAt))} by fti (<code>fti models report ${esc(data.model)}@${data.version}</code>; served at <code>/models/${esc(data.model)}/${data.version}/report</code>).</footer>
</body>
</html>
`;
}

async function plotSections(data: ModelReportData): Promise<Record<(typeof PLOT_SECTIONS)[number], string>> {
  const section = (id: string, heading: string, body: string) => `<section id="${id}" class="plot" data-plot="${id}"><h2>${esc(heading)}</h2>${body}</section>`;
  const missing = (why: string) => `<p class="missing">${esc(why)}</p>`;
  const figure = async (spec: Parameters<typeof renderSvg>[0], caption = '') => `<figure>${await renderSvg(spec)}${caption ? `<figcaption>${esc(caption)}</figcaption>` : ''}</figure>`;
  const ev = data.evaluation;
  const classifier = 'value' in ev && ev.value.kind === 'binary_classifier' ? ev.value : undefined;
  const notClassifier = 'a regressor has no ROC curve or confusion matrix; see predicted against actual';
  const roc = 'missing' in ev ? missing(ev.missing) : classifier ? await figure(rocSpec(classifier.roc, classifier.confusion), `${data.metrics['auc'] === undefined ? '' : `AUC ${data.metrics['auc'].toFixed(4)}; `}the dot: threshold ${classifier.confusion.threshold}`) : missing(notClassifier);
  const confusion = 'missing' in ev ? missing(ev.missing) : classifier ? await figure(confusionSpec(classifier.confusion, data.label), confusionCaption(classifier.confusion, data.label)) : missing(notClassifier);
  const calibration = 'missing' in ev ? missing(ev.missing) : await figure(calibrationSpec(ev.value.calibration, ev.value.kind), `${ev.value.calibration.length} bins of the ${ev.value.kind === 'binary_classifier' ? 'score' : 'prediction'}; a dot's area: the rows in its bin; dashed: perfect calibration`);
  const h = data.history;
  const loss = 'missing' in h ? missing(h.missing) : await figure(lossSpec(h.value.points, h.value.unit), h.value.unit === 'round' ? 'per boosting round kept (up to the best on validation)' : 'mean training loss per epoch; validation loss with the epoch’s final weights');
  const d = data.distributions;
  const distributions = 'missing' in d ? missing(d.missing) : `<div class="features">${(await Promise.all(d.value.map((f) => figure(distributionSpec(f))))).join('\n')}</div>`;
  return {
    roc: section('roc', 'ROC curve', roc),
    calibration: section('calibration', classifier || 'missing' in ev ? 'Calibration' : 'Predicted against actual', calibration),
    confusion: section('confusion', 'Confusion matrix', confusion),
    loss: section('loss', `Training and validation loss`, loss),
    distributions: section('distributions', 'Feature distributions: train vs test', distributions),
  };
}

function metricsTable(metrics: Record<string, number>): string {
  const entries = Object.entries(metrics);
  if (!entries.length) return '<p class="missing">no metrics were recorded</p>';
  return `<table class="metrics"><tr>${entries.map(([k]) => `<th>${esc(k)}</th>`).join('')}</tr><tr>${entries.map(([, v]) => `<td>${esc(fmt(v))}</td>`).join('')}</tr></table>`;
}

function confusionCaption(c: { threshold: number; truePositives: number; falsePositives: number; falseNegatives: number }, label: string): string {
  const precision = c.truePositives + c.falsePositives ? (c.truePositives / (c.truePositives + c.falsePositives)).toFixed(4) : 'n/a';
  const recall = c.truePositives + c.falseNegatives ? (c.truePositives / (c.truePositives + c.falseNegatives)).toFixed(4) : 'n/a';
  return `test split; a score ≥ ${c.threshold} predicts ${label}; precision ${precision}, recall ${recall}`;
}

function lineageTable(data: ModelReportData): string {
  const l = data.lineage;
  const rows: Array<[string, string]> = [];
  if (l.featureView) rows.push(['feature view', `${esc(l.featureView.name)} v${l.featureView.version}`]);
  const ds = data.dataset;
  if ('value' in ds) {
    const c = ds.value.rowCounts;
    rows.push([
      'training dataset',
      `${ds.value.id}: ${esc(day(ds.value.windowStart))} → ${esc(day(ds.value.windowEnd))}; validation from ${esc(day(ds.value.validationStart))}, test from ${esc(day(ds.value.testStart))}; rows train ${n(c.train)}, validation ${n(c.validation)}, test ${n(c.test)}`,
    ]);
  } else rows.push(['training dataset', `${l.trainingDatasetId ?? 'none'} <span class="missing">(${esc(ds.missing)})</span>`]);
  rows.push(['feature commits', l.featureGroupCommits.length ? l.featureGroupCommits.map((c) => `${esc(c.featureGroup)} v${c.version} @ commit ${c.commitId}`).join('<br>') : 'none recorded']);
  if (l.workflowId) {
    const run = `${esc(l.workflowId)}${l.runId ? ` / ${esc(l.runId)}` : ''}`;
    rows.push(['workflow run', l.temporalUiUrl ? `<a href="${esc(l.temporalUiUrl)}">${run}</a> (Temporal UI)` : `${run} <span class="note">(set TEMPORAL_UI_URL for a link to the Temporal UI)</span>`]);
  }
  rows.push(['code version', l.codeVersion ? `<code>${esc(l.codeVersion)}</code>` : 'not recorded']);
  rows.push(['trained', `${esc(when(l.trainedAt))}${l.trainingSeconds !== undefined ? ` in ${l.trainingSeconds.toFixed(1)} s` : ''} · TensorFlow.js backend: ${esc(l.tfjsBackend)}`]);
  rows.push(['params', `<code>${esc(JSON.stringify(data.params))}</code>`]);
  return `<table class="lineage">${rows.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${v}</td></tr>`).join('')}</table>`;
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
}

function fmt(v: number): string {
  return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(4);
}

const n = (v: number) => v.toLocaleString('en-US');
const when = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, ' UTC').replace(/Z$/, ' UTC');
const day = (iso: string) => iso.slice(0, 16).replace('T', ' ');


const CSS = `
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 Helvetica,Arial,sans-serif;color:#222;background:#f6f7f9}
header{background:#1d2b3a;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:24px;font-weight:600}
header .version{color:#9fc3e7}
header .sub{margin:4px 0 0;color:#cfd8e3}
.alias{background:#3d6b99;border-radius:3px;padding:0 6px;margin-right:4px}
main{padding:16px 32px;max-width:1400px}
section{background:#fff;border:1px solid #e1e4e8;border-radius:6px;padding:12px 16px;margin:0 0 16px}
h2{font-size:16px;margin:0 0 8px}
h2 small{font-weight:normal;color:#666}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:16px}
.grid section{margin:0}
.grid + section{margin-top:16px}
.features{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:8px}
figure{margin:0}
figcaption{color:#666;font-size:12px;margin-top:4px}
svg{max-width:100%;height:auto}
table{border-collapse:collapse}
th,td{text-align:left;padding:4px 12px 4px 0;vertical-align:top}
.metrics th{font-weight:normal;color:#666;font-size:12px}
.metrics td{font-size:18px;font-variant-numeric:tabular-nums}
.lineage th{color:#666;font-weight:normal;white-space:nowrap}
.missing{color:#8a6d3b;font-style:italic}
.note{color:#666;font-size:12px}
code{font-size:12px;background:#f0f2f4;padding:1px 4px;border-radius:3px;word-break:break-all}
footer{color:#666;font-size:12px;padding:0 32px 24px}
a{color:#1f5f9e}
`;
