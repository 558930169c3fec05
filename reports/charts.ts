/**
 * The model report's plots as Vega-Lite specs (reports/svg.ts draws them): ROC,
 * calibration, confusion matrix, loss per epoch or round, and one feature's train
 * and test distributions. Pure functions of the report data.
 */
import type { CalibrationBin, ConfusionMatrix, RocPoint } from '../ml/evaluation-curves.ts';
import type { FeatureDistribution } from '../registry/training/index.ts';
import type { LossPoint } from './model-report-data.ts';
import type { TopLevelSpec } from './svg.ts';

const SPLIT_COLORS = { domain: ['train', 'test'], range: ['#4c78a8', '#f58518'] };
const LOSS_COLORS = { domain: ['training', 'validation'], range: ['#4c78a8', '#e45756'] };
const CONFIG = { font: 'Helvetica, Arial, sans-serif', view: { stroke: '#ddd' }, axis: { labelFontSize: 11, titleFontSize: 12 }, legend: { labelFontSize: 11 }, title: { fontSize: 13, anchor: 'start' as const, subtitleFontSize: 11 } };
const SIZE = { width: 300, height: 260 };

const q = (field: string, title: string, extra: Record<string, unknown> = {}) => ({ field, type: 'quantitative' as const, title, ...extra });
const unit = { scale: { domain: [0, 1] } };

export function rocSpec(roc: readonly RocPoint[], confusion: ConfusionMatrix): TopLevelSpec {
  const positives = confusion.truePositives + confusion.falseNegatives;
  const negatives = confusion.falsePositives + confusion.trueNegatives;
  const chosen = { fpr: negatives ? confusion.falsePositives / negatives : 0, tpr: positives ? confusion.truePositives / positives : 0 };
  return {
    ...SIZE,
    config: CONFIG,
    layer: [
      { data: { values: [{ fpr: 0, tpr: 0 }, { fpr: 1, tpr: 1 }] }, mark: { type: 'line', strokeDash: [4, 4], color: '#aaa' }, encoding: { x: q('fpr', 'false positive rate', unit), y: q('tpr', 'true positive rate', unit) } },
      { data: { values: roc.map((p) => ({ ...p })) }, mark: { type: 'line', color: '#4c78a8', strokeWidth: 2 }, encoding: { x: q('fpr', 'false positive rate', unit), y: q('tpr', 'true positive rate', unit), order: q('threshold', 'threshold', { sort: 'descending' }) } },
      { data: { values: [chosen] }, mark: { type: 'point', filled: true, size: 70, color: '#e45756' }, encoding: { x: q('fpr', 'false positive rate', unit), y: q('tpr', 'true positive rate', unit) } },
    ],
  };
}

export function calibrationSpec(bins: readonly CalibrationBin[], kind: 'binary_classifier' | 'regressor'): TopLevelSpec {
  const classifier = kind === 'binary_classifier';
  const lo = Math.min(...bins.map((b) => Math.min(b.meanPredicted, b.meanActual)));
  const hi = Math.max(...bins.map((b) => Math.max(b.meanPredicted, b.meanActual)));
  const domain = classifier ? [0, 1] : [lo, hi];
  const x = q('meanPredicted', classifier ? 'mean predicted probability' : 'mean prediction', { scale: { domain } });
  const y = q('meanActual', classifier ? 'share labelled positive' : 'mean label', { scale: { domain } });
  return {
    ...SIZE,
    config: CONFIG,
    layer: [
      { data: { values: [{ meanPredicted: domain[0], meanActual: domain[0] }, { meanPredicted: domain[1], meanActual: domain[1] }] }, mark: { type: 'line', strokeDash: [4, 4], color: '#aaa' }, encoding: { x, y } },
      { data: { values: bins.map((b) => ({ ...b })) }, mark: { type: 'line', color: '#4c78a8', point: false }, encoding: { x, y } },
      { data: { values: bins.map((b) => ({ ...b })) }, mark: { type: 'circle', color: '#4c78a8', opacity: 0.8 }, encoding: { x, y, size: q('count', 'rows', { legend: null, scale: { range: [25, 400] } }) } },
    ],
  };
}

export function confusionSpec(c: ConfusionMatrix, label: string): TopLevelSpec {
  const total = c.truePositives + c.falsePositives + c.trueNegatives + c.falseNegatives;
  const cell = (actual: string, predicted: string, count: number) => ({ actual, predicted, count, text: `${count.toLocaleString('en-US')} (${total ? ((100 * count) / total).toFixed(1) : '0'}%)` });
  const pos = `${label}`;
  const neg = `not ${label}`;
  const values = [cell(pos, pos, c.truePositives), cell(pos, neg, c.falseNegatives), cell(neg, pos, c.falsePositives), cell(neg, neg, c.trueNegatives)];
  const axis = (field: string, title: string) => ({ field, type: 'nominal' as const, title, sort: [pos, neg], axis: { labelAngle: 0 } });
  return {
    width: 260,
    height: 200,
    config: CONFIG,
    data: { values },
    encoding: { x: axis('predicted', 'predicted'), y: axis('actual', 'actual') },
    layer: [
      { mark: { type: 'rect', stroke: '#fff' }, encoding: { color: { field: 'count', type: 'quantitative', scale: { scheme: 'blues' }, legend: null } } },
      { mark: { type: 'text', fontSize: 13 }, encoding: { text: { field: 'text' }, color: { condition: { test: `datum.count > ${total / 3}`, value: 'white' }, value: 'black' } } },
    ],
  };
}

export function lossSpec(points: readonly LossPoint[], unitName: 'epoch' | 'round'): TopLevelSpec {
  const values = points.flatMap((p) => [{ step: p.step, series: 'training', loss: p.loss }, ...(p.valLoss !== undefined ? [{ step: p.step, series: 'validation', loss: p.valLoss }] : [])]);
  return {
    ...SIZE,
    config: CONFIG,
    data: { values },
    mark: { type: 'line', point: true },
    encoding: {
      x: q('step', unitName, { axis: { tickMinStep: 1, format: 'd' } }),
      y: q('loss', 'loss', { scale: { zero: false } }),
      color: { field: 'series', type: 'nominal', title: null, scale: LOSS_COLORS, legend: { orient: 'top-right' } },
    },
  };
}

export function distributionSpec(d: FeatureDistribution): TopLevelSpec {
  const share = (n: number, total: number) => (total > 0 ? n / total : 0);
  const present = { train: d.rows.train - d.missing.train, test: d.rows.test - d.missing.test };
  const values = d.bins.flatMap((b) => (['train', 'test'] as const).map((split) => ({ split, label: b.label, lo: b.lo, hi: b.hi, share: share(b[split], present[split]) })));
  const missing = (split: 'train' | 'test') => `${(100 * share(d.missing[split], d.rows[split])).toFixed(1)}%`;
  const title = {
    text: d.feature,
    subtitle: `missing: train ${missing('train')}, test ${missing('test')}${d.trainSampled ? '; train split sampled (1/8)' : ''}`,
  };
  const y = q('share', 'share of non-missing rows', { axis: { format: '.0%' }, stack: null });
  const color = { field: 'split', type: 'nominal' as const, title: null, scale: SPLIT_COLORS, legend: { orient: 'top' as const, direction: 'horizontal' as const } };
  if (d.kind === 'numeric') {
    return { width: 300, height: 150, config: CONFIG, title, data: { values }, mark: { type: 'bar', opacity: 0.55, binSpacing: 0 }, encoding: { x: q('lo', d.feature, { scale: { zero: false } }), x2: { field: 'hi' }, y, y2: { datum: 0 }, color } };
  }
  return {
    width: 300,
    height: 150,
    config: CONFIG,
    title,
    data: { values },
    mark: { type: 'bar' },
    encoding: { x: { field: 'label', type: 'nominal', title: null, sort: d.bins.map((b) => b.label), axis: { labelAngle: -40, labelLimit: 80 } }, xOffset: { field: 'split', sort: ['train', 'test'] }, y, color },
  };
}
