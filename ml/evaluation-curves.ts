/**
 * Compact summaries of a model's scores on its test split, for the model report: the
 * ROC curve, a calibration (reliability) table and the confusion matrix at the
 * version's threshold for classifiers; predicted against actual for regressors.
 * One pass over the rows into fixed bins, so a summary stays a few kilobytes
 * however large the split (the AUC itself is the exact one in ml/metrics.ts).
 */
import { invalid } from '../core/errors.ts';

/** One point of the ROC curve: rows scoring at or above `threshold` are called positive. */
export interface RocPoint {
  threshold: number;
  fpr: number;
  tpr: number;
}

/** Rows whose score fell in [lo, hi): their mean score and the share of them labelled positive (regressors: the mean label). */
export interface CalibrationBin {
  lo: number;
  hi: number;
  count: number;
  meanPredicted: number;
  meanActual: number;
}

export interface ConfusionMatrix {
  threshold: number;
  truePositives: number;
  falsePositives: number;
  trueNegatives: number;
  falseNegatives: number;
}

export interface ClassifierCurves {
  kind: 'binary_classifier';
  rows: number;
  positives: number;
  roc: RocPoint[];
  calibration: CalibrationBin[];
  confusion: ConfusionMatrix;
}

export interface RegressorCurves {
  kind: 'regressor';
  rows: number;
  /** Bins of the prediction's range: mean prediction against mean label. */
  calibration: CalibrationBin[];
}

export type EvaluationCurves = ClassifierCurves | RegressorCurves;

/** Score bins the ROC curve is read from (thresholds 0, 1/ROC_BINS, …, 1). */
const ROC_BINS = 1000;
const CALIBRATION_BINS = 10;

/** Labels 0/1, scores probabilities of label 1; a row is positive when its score ≥ threshold (as evaluateClassifier). */
export function classifierCurves(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold = 0.5): ClassifierCurves {
  const rows = checkLengths(labels, scores);
  const pos = new Float64Array(ROC_BINS + 1);
  const neg = new Float64Array(ROC_BINS + 1);
  const cal = Array.from({ length: CALIBRATION_BINS }, () => ({ count: 0, score: 0, positives: 0 }));
  const confusion: ConfusionMatrix = { threshold, truePositives: 0, falsePositives: 0, trueNegatives: 0, falseNegatives: 0 };
  let positives = 0;
  for (let i = 0; i < rows; i++) {
    const y = labels[i] as number;
    const p = scores[i] as number;
    if (y !== 0 && y !== 1) throw invalid(`labels must be 0 or 1; label ${i} is ${y}`);
    if (!(p >= 0 && p <= 1)) throw invalid(`scores must be probabilities in [0, 1]; score ${i} is ${p}`);
    positives += y;
    // Bin k holds scores in [k/ROC_BINS, (k+1)/ROC_BINS): "at or above threshold k/ROC_BINS" is bins ≥ k.
    const k = Math.min(ROC_BINS, Math.floor(p * ROC_BINS));
    if (y === 1) pos[k] = (pos[k] as number) + 1;
    else neg[k] = (neg[k] as number) + 1;
    const c = cal[Math.min(CALIBRATION_BINS - 1, Math.floor(p * CALIBRATION_BINS))] as (typeof cal)[number];
    c.count += 1;
    c.score += p;
    c.positives += y;
    if (p >= threshold) {
      if (y === 1) confusion.truePositives += 1;
      else confusion.falsePositives += 1;
    } else if (y === 1) confusion.falseNegatives += 1;
    else confusion.trueNegatives += 1;
  }
  const negatives = rows - positives;
  const roc: RocPoint[] = [{ threshold: 1 + 1 / ROC_BINS, fpr: 0, tpr: 0 }];
  let tp = 0;
  let fp = 0;
  for (let k = ROC_BINS; k >= 0; k--) {
    const dp = pos[k] as number;
    const dn = neg[k] as number;
    if (dp === 0 && dn === 0) continue; // no row moves the curve here
    tp += dp;
    fp += dn;
    roc.push({ threshold: k / ROC_BINS, fpr: negatives > 0 ? fp / negatives : 0, tpr: positives > 0 ? tp / positives : 0 });
  }
  const calibration = cal.flatMap((c, k) => (c.count > 0 ? [{ lo: k / CALIBRATION_BINS, hi: (k + 1) / CALIBRATION_BINS, count: c.count, meanPredicted: c.score / c.count, meanActual: c.positives / c.count }] : []));
  return { kind: 'binary_classifier', rows, positives, roc: thinCurve(roc), calibration, confusion };
}

/** Predictions binned over their range (equal width), each bin's mean prediction against its mean label. */
export function regressorCurves(labels: ArrayLike<number>, predictions: ArrayLike<number>, bins = 20): RegressorCurves {
  const rows = checkLengths(labels, predictions);
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < rows; i++) {
    const p = predictions[i] as number;
    if (!Number.isFinite(p) || !Number.isFinite(labels[i] as number)) throw invalid(`label and prediction ${i} must be finite numbers`);
    lo = Math.min(lo, p);
    hi = Math.max(hi, p);
  }
  const width = hi > lo ? (hi - lo) / bins : 1;
  const acc = Array.from({ length: bins }, () => ({ count: 0, predicted: 0, actual: 0 }));
  for (let i = 0; i < rows; i++) {
    const p = predictions[i] as number;
    const a = acc[Math.min(bins - 1, Math.floor((p - lo) / width))] as (typeof acc)[number];
    a.count += 1;
    a.predicted += p;
    a.actual += labels[i] as number;
  }
  const calibration = acc.flatMap((a, k) => (a.count > 0 ? [{ lo: lo + k * width, hi: lo + (k + 1) * width, count: a.count, meanPredicted: a.predicted / a.count, meanActual: a.actual / a.count }] : []));
  return { kind: 'regressor', rows, calibration };
}

/**
 * Keeps at most `max` points of a curve, evenly spaced along it, with both ends: a
 * split whose scores take every bin would otherwise carry 1,000 points.
 */
export function thinCurve<T>(points: readonly T[], max = 200): T[] {
  if (points.length <= max) return [...points];
  const step = (points.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => points[Math.round(i * step)] as T);
}

function checkLengths(labels: ArrayLike<number>, values: ArrayLike<number>): number {
  if (labels.length !== values.length) throw invalid(`${labels.length} labels but ${values.length} scores`);
  if (labels.length === 0) throw invalid('cannot summarize an empty split');
  return labels.length;
}
