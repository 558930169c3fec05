/**
 * The one implementation of feature encoding: training, batch inference and the
 * online server all turn rows into model input through createEncoder, driven by
 * the signature stored with the model version. fitSignature builds that signature
 * from feature specs (what the user asked for) and statistics of the training split.
 *
 * Null handling (see signature.ts): standardize fills with the training mean and
 * can add a 0/1 missing column; one_hot encodes null and unseen categories as all
 * zeros; cyclical encodes null as (0, 0). The tree encodings (a gradient-boosted tree
 * model's signature) keep numbers as they are and categories as an index, null as NaN.
 */
import { z } from 'zod';
import { FtiError, invalid, parseOrThrow } from '../core/errors.ts';
import { FeatureSpecSchema, type FeatureSpec } from './feature-spec.ts';
import { ModelSignatureSchema, type ModelSignature, type SignatureInput } from './signature.ts';
import type { CategoricalStats, FeatureStats, NumericStats, QuantileStats } from './stats.ts';
import { columnValue, type Column, type ColumnBatch, type NumberColumnType } from '../core/columns.ts';
import type { FeatureDtype } from './signature.ts';
import { readCategory, readNumber, type FeatureRow } from './values.ts';

/**
 * The signature for these features, fitted on the training split's statistics:
 * standardize takes mean/std (std ≤ 0 becomes 1) and fills nulls with the mean;
 * one_hot takes the categories, most frequent first.
 */
export function fitSignature(inputs: readonly FeatureSpec[], stats: Readonly<Record<string, FeatureStats>>, output: ModelSignature['output'], family: ModelFamily = 'mlp'): ModelSignature {
  const specs = parseOrThrow(z.array(FeatureSpecSchema).min(1), inputs, 'feature specs');
  const seen = new Set<string>();
  const fitted: SignatureInput[] = specs.map((spec) => {
    if (seen.has(spec.name)) throw invalid(`feature ${spec.name} is listed twice`);
    seen.add(spec.name);
    if (family === 'gbdt') {
      // Trees take numbers as they are and a one_hot feature as one categorical input.
      if (spec.encoding !== 'one_hot') return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'number' } };
      const s = statsOf(stats, spec.name, isCategorical, 'categorical stats { categories }');
      const categories = [...new Set(s.categories)].slice(0, Math.min(spec.maxCategories ?? MAX_TREE_CATEGORIES, MAX_TREE_CATEGORIES));
      if (categories.length === 0) throw invalid(`feature ${spec.name} has no non-null values in the training split, so it has no categories`);
      return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'category', categories } };
    }
    switch (spec.encoding) {
      case 'standardize': {
        const s = statsOf(stats, spec.name, isNumeric, 'numeric stats { count, mean, std }');
        // An empty or constant column: keep it finite and harmless instead of dividing by ~0.
        const mean = s.count > 0 && Number.isFinite(s.mean) ? s.mean : 0;
        const std = Number.isFinite(s.std) && s.std > 1e-12 * Math.max(1, Math.abs(mean)) ? s.std : 1;
        return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'standardize', mean, std, fill: mean, missingIndicator: spec.missingIndicator } };
      }
      case 'one_hot': {
        const s = statsOf(stats, spec.name, isCategorical, 'categorical stats { categories }');
        const categories = [...new Set(s.categories)].slice(0, spec.maxCategories);
        if (categories.length === 0) throw invalid(`feature ${spec.name} has no non-null values in the training split, so one_hot has no categories`);
        return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'one_hot', categories } };
      }
      case 'cyclical':
        return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'cyclical', period: spec.period } };
      case 'bins': {
        const s = statsOf(stats, spec.name, isQuantiles, 'quantile stats { count, quantiles }');
        // Repeated quantiles (a value that fills several bins) merge their bins; a column
        // with one value (or none) keeps one bin so that it still encodes.
        const edges = [...new Set(s.quantiles.filter(Number.isFinite))].sort((a, b) => a - b);
        if (edges.length === 0) edges.push(0);
        if (edges.length === 1) edges.push((edges[0] as number) + 1);
        return { name: spec.name, dtype: spec.dtype, encoding: { kind: 'bins', edges, missingIndicator: spec.missingIndicator } };
      }
    }
  });
  return parseOrThrow(ModelSignatureSchema, { inputs: fitted, output }, 'model signature');
}

/** The model families a signature can be fitted for (model.ts's TrainParams `family`). */
export type ModelFamily = 'mlp' | 'gbdt';

/** Categories a tree model keeps per feature (with "other" and missing they fit its 255 histogram bins). */
export const MAX_TREE_CATEGORIES = 250;

export interface Encoder {
  readonly signature: ModelSignature;
  /** Number of model input columns per row. */
  readonly width: number;
  /** Names of the encoded columns, in order: `distance`, `distance:missing`, `origin=SFO`, `hour:sin`, … */
  readonly columns: readonly string[];
  /** Writes one row's `width` values into `out` at `offset`. Throws on any problem validateRow would report. */
  encodeRow(row: FeatureRow, out: Float32Array, offset?: number): void;
  encodeRows(rows: readonly FeatureRow[]): Float32Array;
  /**
   * Writes a batch's rows (row i at `i * width`) from its columns, with no object per
   * row. Returns a flag per row: 1 where what was written cannot be trusted (a value
   * that may not fit the signature, a column that is absent); encodeRow decides those
   * rows (with the batch's row object, core/columns.ts rowOf), so a batch encodes
   * exactly as its rows would.
   */
  encodeColumns(batch: ColumnBatch, out: Float32Array): Uint8Array;
  /** Every problem with this row (absent feature, wrong type, NaN/Infinity); empty when encodeRow would succeed. */
  validateRow(row: FeatureRow): string[];
}

/**
 * One signature input's encoding: `read` checks a value (readNumber or readCategory,
 * throwing a valueProblem) and `put` writes the input's columns from what it gives.
 * Rows and columns are encoded by the same `put`.
 */
type ColumnWriter = { name: string; dtype: FeatureDtype; columns: string[] } & (
  | {
      reads: 'number';
      put(x: number | null, out: Float32Array, at: number): void;
      /** `put` for `size` rows of a number column (null where nulls[i] is 1), row i at `first + i * width`: one loop per encoding, whose `put` calls stay inlinable. */
      putColumn(values: Float64Array, nulls: Uint8Array, size: number, out: Float32Array, first: number, width: number): void;
    }
  | {
      reads: 'category';
      put(key: string | null, out: Float32Array, at: number): void;
      /** `put` for `size` rows of keys, as putColumn. */
      putKeys(keys: ReadonlyArray<string | null>, size: number, out: Float32Array, first: number, width: number): void;
    }
);

/** Writes one row's value of `w`'s feature; throws a valueProblem for a bad value. */
function writeValue(w: ColumnWriter, value: unknown, out: Float32Array, at: number): void {
  if (w.reads === 'number') w.put(readNumber(w.name, w.dtype, value), out, at);
  else w.put(readCategory(w.name, w.dtype, value), out, at);
}

export function createEncoder(signature: ModelSignature): Encoder {
  const sig = parseOrThrow(ModelSignatureSchema, signature, 'model signature');
  const writers = sig.inputs.map(columnWriter);
  const columns = writers.flatMap((w) => w.columns);
  const width = columns.length;
  const scratch = new Float32Array(width);

  const encodeRow = (row: FeatureRow, out: Float32Array, offset = 0): void => {
    if (offset < 0 || offset + width > out.length) throw invalid(`encodeRow: ${width} values at offset ${offset} do not fit an array of ${out.length}`);
    let at = offset;
    for (const w of writers) {
      writeValue(w, row[w.name], out, at);
      at += w.columns.length;
    }
  };

  return {
    signature: sig,
    width,
    columns,
    encodeRow,
    encodeRows(rows) {
      const out = new Float32Array(rows.length * width);
      rows.forEach((row, i) => encodeRow(row, out, i * width));
      return out;
    },
    encodeColumns(batch, out) {
      if (batch.size * width > out.length) throw invalid(`encodeColumns: ${batch.size} rows of ${width} values do not fit an array of ${out.length}`);
      const unsure = new Uint8Array(batch.size);
      let first = 0;
      for (const w of writers) {
        const column = batch.columns.get(w.name);
        if (column === undefined) unsure.fill(1);
        else writeColumn(w, column, batch.size, out, first, width, unsure);
        first += w.columns.length;
      }
      return unsure;
    },
    validateRow(row) {
      if (typeof row !== 'object' || row === null || Array.isArray(row)) return ['a row must be an object of feature values'];
      const problems: string[] = [];
      let at = 0;
      for (const w of writers) {
        try {
          writeValue(w, row[w.name], scratch, at);
        } catch (err) {
          if (!(err instanceof FtiError)) throw err;
          problems.push(err.message);
        }
        at += w.columns.length;
      }
      return problems;
    },
  };
}

/**
 * Writes `w`'s columns for `size` rows of `column` (row i at `first + i * width`),
 * flagging in `unsure` the rows it cannot vouch for. Numbers of a type the input takes
 * as they are, and text for a string category, are written straight from the column;
 * any other pairing value by value, through the row path's checks (writeValue).
 */
function writeColumn(w: ColumnWriter, column: Column, size: number, out: Float32Array, first: number, width: number, unsure: Uint8Array): void {
  if (w.reads === 'number' && column.type !== 'text' && column.type !== 'value') {
    const accepts = numberCheck(w.dtype, column.type);
    if (accepts !== undefined) {
      const { values, nulls } = column;
      // What is written for a value the input does not take is garbage: the row path redoes (or rejects) its row.
      if (accepts !== anyNumber) for (let i = 0; i < size; i++) if (!nulls[i] && !accepts(values[i] as number)) unsure[i] = 1;
      w.putColumn(values, nulls, size, out, first, width);
      return;
    }
  }
  if (w.reads === 'category' && w.dtype === 'string' && column.type === 'text') {
    w.putKeys(column.values, size, out, first, width);
    return;
  }
  for (let i = 0, at = first; i < size; i++, at += width) {
    try {
      writeValue(w, columnValue(column, i), out, at);
    } catch (err) {
      if (!(err instanceof FtiError)) throw err;
      unsure[i] = 1;
    }
  }
}

const anyNumber = () => true;

/** Whole numbers from 0 below this have their cyclical encoding looked up (columnWriter). */
const CYCLE_TABLE = 1024;

/**
 * Which non-null values of a number column of `type` readNumber takes as they are for
 * an input of `dtype` (a float must be finite, an int whole), or undefined when the
 * pairing needs the row path (a bool column for a float input: readNumber refuses it).
 */
function numberCheck(dtype: FeatureDtype, type: NumberColumnType): ((x: number) => boolean) | undefined {
  if (dtype === 'float') return type === 'float' ? Number.isFinite : type === 'int' ? anyNumber : undefined;
  if (dtype === 'int') return type === 'int' ? anyNumber : type === 'float' ? Number.isInteger : undefined;
  if (dtype === 'bool') return type === 'bool' ? anyNumber : undefined;
  return undefined;
}

/** A number input's writer: `put` once per row, or in putColumn's loop over a column. */
function numberWriter(input: SignatureInput, columns: string[], put: (x: number | null, out: Float32Array, at: number) => void): ColumnWriter {
  return {
    name: input.name,
    dtype: input.dtype,
    columns,
    reads: 'number',
    put,
    putColumn(values, nulls, size, out, first, width) {
      for (let i = 0, at = first; i < size; i++, at += width) put(nulls[i] ? null : (values[i] as number), out, at);
    },
  };
}

/** A category input's writer, as numberWriter. */
function categoryWriter(input: SignatureInput, columns: string[], put: (key: string | null, out: Float32Array, at: number) => void): ColumnWriter {
  return {
    name: input.name,
    dtype: input.dtype,
    columns,
    reads: 'category',
    put,
    putKeys(keys, size, out, first, width) {
      for (let i = 0, at = first; i < size; i++, at += width) put(keys[i] as string | null, out, at);
    },
  };
}

function columnWriter(input: SignatureInput): ColumnWriter {
  const { name, dtype, encoding } = input;
  switch (encoding.kind) {
    case 'standardize': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be standardized`);
      const { mean, std, fill, missingIndicator } = encoding;
      return numberWriter(input, missingIndicator ? [name, `${name}:missing`] : [name], (x, out, at) => {
        out[at] = ((x ?? fill) - mean) / std;
        if (missingIndicator) out[at + 1] = x === null ? 1 : 0;
      });
    }
    case 'one_hot': {
      const index = new Map(encoding.categories.map((c, i) => [c, i]));
      return categoryWriter(input, encoding.categories.map((c) => `${name}=${c}`), (key, out, at) => {
        out.fill(0, at, at + index.size);
        const i = key === null ? undefined : index.get(key);
        if (i !== undefined) out[at + i] = 1;
      });
    }
    case 'bins': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be encoded in bins`);
      const { edges, missingIndicator } = encoding;
      const bins = edges.length - 1;
      const last = bins - 1;
      const columns = [...Array.from({ length: bins }, (_, i) => `${name}:bin${i}`), ...(missingIndicator ? [`${name}:missing`] : [])];
      return numberWriter(input, columns, (x, out, at) => {
        for (let i = 0; i < bins; i++) {
          if (x === null) {
            out[at + i] = 0;
            continue;
          }
          const lo = edges[i] as number;
          const hi = edges[i + 1] as number;
          out[at + i] = i > 0 && x < lo ? 0 : i < last && x >= hi ? 1 : (x - lo) / (hi - lo);
        }
        if (missingIndicator) out[at + bins] = x === null ? 1 : 0;
      });
    }
    case 'number': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string has no numeric value`);
      return numberWriter(input, [name], (x, out, at) => {
        out[at] = x ?? Number.NaN;
      });
    }
    case 'category': {
      const index = new Map(encoding.categories.map((c, i) => [c, i]));
      return categoryWriter(input, [name], (key, out, at) => {
        out[at] = key === null ? Number.NaN : (index.get(key) ?? index.size);
      });
    }
    case 'cyclical': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be encoded as cyclical`);
      const scale = (2 * Math.PI) / encoding.period;
      // sin and cos of each small whole number (an hour, a weekday) are computed once, on
      // first use: the same values, where two calls a row were a third of a batch's encoding.
      const known = new Float64Array(2 * CYCLE_TABLE).fill(Number.NaN);
      return numberWriter(input, [`${name}:sin`, `${name}:cos`], (x, out, at) => {
        if (x === null) {
          out[at] = 0;
          out[at + 1] = 0;
        } else if (x >= 0 && x < CYCLE_TABLE && Math.floor(x) === x && !Object.is(x, -0)) {
          let sin = known[2 * x] as number;
          if (Number.isNaN(sin)) {
            sin = known[2 * x] = Math.sin(x * scale);
            known[2 * x + 1] = Math.cos(x * scale);
          }
          out[at] = sin;
          out[at + 1] = known[2 * x + 1] as number;
        } else {
          out[at] = Math.sin(x * scale);
          out[at + 1] = Math.cos(x * scale);
        }
      });
    }
  }
}

function statsOf<T extends FeatureStats>(stats: Readonly<Record<string, FeatureStats>>, feature: string, is: (s: FeatureStats) => s is T, expected: string): T {
  const s = Object.hasOwn(stats, feature) ? stats[feature] : undefined;
  if (s === undefined || !is(s)) throw invalid(`feature ${feature} needs ${expected}, got ${JSON.stringify(s) ?? 'nothing'}`);
  return s;
}

function isNumeric(s: FeatureStats): s is NumericStats {
  return 'mean' in s && typeof s.mean === 'number' && typeof s.std === 'number' && typeof s.count === 'number';
}

function isQuantiles(s: FeatureStats): s is QuantileStats {
  return 'quantiles' in s && Array.isArray(s.quantiles) && s.quantiles.every((q) => typeof q === 'number');
}

function isCategorical(s: FeatureStats): s is CategoricalStats {
  return 'categories' in s && Array.isArray(s.categories) && s.categories.every((c) => typeof c === 'string');
}
