/**
 * Histogram bins of a gradient-boosted tree model: every input column becomes at most
 * 255 small integers, so a tree node's split search reads one histogram per column
 * instead of sorting rows (the LightGBM / scikit-learn HistGradientBoosting design).
 *
 * A numeric column's value bins are cut at thresholds fitted on the training rows:
 * value bin j holds `thresholds[j-1] < x ≤ thresholds[j]`, the last one everything
 * above. A categorical column (the tree encoding's category index, signature.ts) has
 * one value bin per category, "other" included. Either way the bin after the value
 * bins holds the missing values (NaN), so a split learns where missing rows go.
 *
 * Thresholds are float32 values and inputs are float32, so binning at training time
 * and the `x ≤ threshold` test at prediction time compare the very same numbers.
 */
import { invalid } from '../../core/errors.ts';

export interface ColumnBins {
  categorical: boolean;
  /** Numeric columns: ascending float32 cut points (empty for a constant or all-missing column). */
  thresholds: Float32Array;
  /** Value bins; the missing bin is this index. Numeric: thresholds.length + 1; categorical: categories + 1 (other). */
  values: number;
}

/** At most this many bins per column, the missing bin included (they must fit a Uint8). */
export const MAX_BINS = 255;
/** Rows sampled (evenly spaced) to fit numeric thresholds. */
const THRESHOLD_SAMPLE = 200_000;

/**
 * Thresholds of one numeric column (`x` is rows × width, row-major; `column` its index).
 * With few distinct values every gap between two of them gets a cut at its midpoint;
 * otherwise the cuts are quantiles of an evenly spaced sample of rows.
 */
export function fitNumericBins(x: Float32Array, rows: number, width: number, column: number, maxBins = MAX_BINS): ColumnBins {
  if (!Number.isInteger(maxBins) || maxBins < 3 || maxBins > MAX_BINS) throw invalid(`maxBins must be an integer in [3, ${MAX_BINS}], got ${maxBins}`);
  const step = Math.max(1, Math.floor(rows / THRESHOLD_SAMPLE));
  const sample: number[] = [];
  for (let r = 0; r < rows; r += step) {
    const v = x[r * width + column] as number;
    if (!Number.isNaN(v)) sample.push(v);
  }
  const sorted = Float64Array.from(sample).sort();
  const distinct: number[] = [];
  for (const v of sorted) if (distinct.length === 0 || v !== distinct[distinct.length - 1]) distinct.push(v);
  const valueBins = maxBins - 1;
  const cuts: number[] = [];
  if (distinct.length <= valueBins) {
    for (let i = 0; i + 1 < distinct.length; i++) {
      const lo = distinct[i] as number;
      const mid = Math.fround(lo + ((distinct[i + 1] as number) - lo) / 2);
      // Two neighbouring float32 values have no float32 between them: cut at the lower.
      cuts.push(mid < (distinct[i + 1] as number) ? mid : lo);
    }
  } else {
    for (let q = 1; q < valueBins; q++) {
      const v = sorted[Math.floor((q * sorted.length) / valueBins)] as number;
      // The largest value never cuts (nothing would lie above it); repeats merge.
      if (v < (distinct[distinct.length - 1] as number) && (cuts.length === 0 || v > (cuts[cuts.length - 1] as number))) cuts.push(v);
    }
  }
  const thresholds = Float32Array.from(cuts);
  return { categorical: false, thresholds, values: thresholds.length + 1 };
}

/** A categorical column of `categories` known categories (indices 0…categories−1) plus "other" (index categories). */
export function categoricalBins(categories: number): ColumnBins {
  if (!Number.isInteger(categories) || categories < 1 || categories + 2 > MAX_BINS) throw invalid(`a categorical column needs 1 to ${MAX_BINS - 2} categories, got ${categories}`);
  return { categorical: true, thresholds: new Float32Array(0), values: categories + 1 };
}

/** The value bin of a categorical input: its index, "other" for anything out of range. */
export function categoryBin(v: number, values: number): number {
  const i = Math.trunc(v);
  return i >= 0 && i < values ? i : values - 1;
}

/** Every row's bin per column, row-major (rows × width) like `x`; on a SharedArrayBuffer when `shared`. */
export function binRows(x: Float32Array, rows: number, width: number, columns: readonly ColumnBins[], shared = false): Uint8Array {
  if (columns.length !== width || x.length !== rows * width) throw invalid(`binRows: expected ${rows}×${width} values and ${width} column bins, got ${x.length} and ${columns.length}`);
  const out = new Uint8Array(shared ? new SharedArrayBuffer(rows * width) : new ArrayBuffer(rows * width));
  const padded = new Float32Array(PADDED);
  columns.forEach((c, f) => {
    if (c.categorical) {
      for (let r = 0, at = f; r < rows; r++, at += width) {
        const v = x[at] as number;
        out[at] = Number.isNaN(v) ? c.values : categoryBin(v, c.values);
      }
      return;
    }
    padded.fill(Number.POSITIVE_INFINITY);
    padded.set(c.thresholds);
    for (let r = 0, at = f; r < rows; r++, at += width) {
      const v = x[at] as number;
      out[at] = Number.isNaN(v) ? c.values : numericBin(v, padded);
    }
  });
  return out;
}

/** Thresholds padded with +∞ to this many (a power of two above MAX_BINS' thresholds), for numericBin. */
const PADDED = 256;

/**
 * The value bin of a numeric input (not NaN): how many thresholds lie below it, that is
 * the first threshold it does not exceed, else the last bin. `padded` is the thresholds
 * padded with +∞ to PADDED values. The search has no branch to mispredict: on rows in
 * shuffled order a branchy binary search took twice as long.
 */
function numericBin(v: number, padded: Float32Array): number {
  let lo = 0;
  for (let half = PADDED >> 1; half >= 1; half >>= 1) lo += half & -Number((padded[lo + half - 1] as number) < v);
  return lo;
}
