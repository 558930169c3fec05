/**
 * Test-split metrics recorded on a model version. Pure functions over plain arrays,
 * written for millions of rows: AUC is O(n log n) with native typed-array sorts and
 * no comparator callbacks; everything else is one pass in double precision.
 */
import { invalid } from '../core/errors.ts';

export interface ClassifierMetrics {
  count: number;
  positives: number;
  /** Area under the ROC curve; tied scores count one half. null when the split holds one class only. */
  auc: number | null;
  /** Mean binary cross-entropy; the true class's probability is clipped at 1e-15. */
  logLoss: number;
  accuracy: number;
  /** null when no row scores at or above the threshold. */
  precision: number | null;
  /** null when the split has no positives. */
  recall: number | null;
  threshold: number;
}

export interface RegressorMetrics {
  count: number;
  rmse: number;
  mae: number;
}

const LOG_LOSS_EPS = 1e-15;

/** Labels are 0/1; scores are probabilities of label 1; a row is predicted positive when score ≥ threshold. */
export function evaluateClassifier(labels: ArrayLike<number>, scores: ArrayLike<number>, threshold = 0.5): ClassifierMetrics {
  const count = checkLengths(labels, scores, 'scores');
  let positives = 0;
  let truePositives = 0;
  let predictedPositives = 0;
  let correct = 0;
  let logLossSum = 0;
  for (let i = 0; i < count; i++) {
    const y = labels[i] as number;
    const p = scores[i] as number;
    if (y !== 0 && y !== 1) throw invalid(`labels must be 0 or 1; label ${i} is ${y}`);
    if (!(p >= 0 && p <= 1)) throw invalid(`scores must be probabilities in [0, 1]; score ${i} is ${p}`);
    const predicted = p >= threshold ? 1 : 0;
    positives += y;
    predictedPositives += predicted;
    truePositives += y & predicted;
    if (predicted === y) correct += 1;
    // Clip the probability of the true class: 1 - (1 - 1e-15) is not 1e-15 in doubles.
    logLossSum -= Math.log(Math.max(y === 1 ? p : 1 - p, LOG_LOSS_EPS));
  }
  return {
    count,
    positives,
    auc: rocAuc(labels, scores, positives),
    logLoss: logLossSum / count,
    accuracy: correct / count,
    precision: predictedPositives > 0 ? truePositives / predictedPositives : null,
    recall: positives > 0 ? truePositives / positives : null,
    threshold,
  };
}

export function evaluateRegressor(labels: ArrayLike<number>, predictions: ArrayLike<number>): RegressorMetrics {
  const count = checkLengths(labels, predictions, 'predictions');
  let squared = 0;
  let absolute = 0;
  for (let i = 0; i < count; i++) {
    const error = (predictions[i] as number) - (labels[i] as number);
    if (!Number.isFinite(error)) throw invalid(`label and prediction ${i} must be finite numbers`);
    squared += error * error;
    absolute += Math.abs(error);
  }
  return { count, rmse: Math.sqrt(squared / count), mae: absolute / count };
}

/**
 * The Mann–Whitney form of ROC AUC: the probability that a random positive scores
 * above a random negative, ties counting one half. Positive and negative scores are
 * sorted separately; one merge pass counts, for every positive, the negatives below
 * it and those tied with it.
 */
function rocAuc(labels: ArrayLike<number>, scores: ArrayLike<number>, positives: number): number | null {
  const negatives = labels.length - positives;
  if (positives === 0 || negatives === 0) return null;
  const pos = new Float64Array(positives);
  const neg = new Float64Array(negatives);
  for (let i = 0, p = 0, n = 0; i < labels.length; i++) {
    if (labels[i] === 1) pos[p++] = scores[i] as number;
    else neg[n++] = scores[i] as number;
  }
  pos.sort();
  neg.sort();
  let below = 0; // negatives with score < s
  let atOrBelow = 0; // negatives with score <= s
  let wins = 0;
  for (const s of pos) {
    while (below < negatives && (neg[below] as number) < s) below++;
    if (atOrBelow < below) atOrBelow = below;
    while (atOrBelow < negatives && (neg[atOrBelow] as number) <= s) atOrBelow++;
    wins += below + 0.5 * (atOrBelow - below);
  }
  return wins / (positives * negatives);
}

function checkLengths(labels: ArrayLike<number>, values: ArrayLike<number>, what: string): number {
  if (labels.length !== values.length) throw invalid(`${labels.length} labels but ${values.length} ${what}`);
  if (labels.length === 0) throw invalid('cannot evaluate an empty split');
  return labels.length;
}
