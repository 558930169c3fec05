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
  /** Every problem with this row (absent feature, wrong type, NaN/Infinity); empty when encodeRow would succeed. */
  validateRow(row: FeatureRow): string[];
}

interface ColumnWriter {
  name: string;
  columns: string[];
  /** Writes this feature's columns at `at`; throws a valueProblem for a bad value. */
  write(value: unknown, out: Float32Array, at: number): void;
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
      w.write(row[w.name], out, at);
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
    validateRow(row) {
      if (typeof row !== 'object' || row === null || Array.isArray(row)) return ['a row must be an object of feature values'];
      const problems: string[] = [];
      let at = 0;
      for (const w of writers) {
        try {
          w.write(row[w.name], scratch, at);
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

function columnWriter(input: SignatureInput): ColumnWriter {
  const { name, dtype, encoding } = input;
  switch (encoding.kind) {
    case 'standardize': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be standardized`);
      const { mean, std, fill, missingIndicator } = encoding;
      return {
        name,
        columns: missingIndicator ? [name, `${name}:missing`] : [name],
        write(value, out, at) {
          const x = readNumber(name, dtype, value);
          out[at] = ((x ?? fill) - mean) / std;
          if (missingIndicator) out[at + 1] = x === null ? 1 : 0;
        },
      };
    }
    case 'one_hot': {
      const index = new Map(encoding.categories.map((c, i) => [c, i]));
      return {
        name,
        columns: encoding.categories.map((c) => `${name}=${c}`),
        write(value, out, at) {
          const key = readCategory(name, dtype, value);
          out.fill(0, at, at + index.size);
          const i = key === null ? undefined : index.get(key);
          if (i !== undefined) out[at + i] = 1;
        },
      };
    }
    case 'bins': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be encoded in bins`);
      const { edges, missingIndicator } = encoding;
      const bins = edges.length - 1;
      const last = bins - 1;
      return {
        name,
        columns: [...Array.from({ length: bins }, (_, i) => `${name}:bin${i}`), ...(missingIndicator ? [`${name}:missing`] : [])],
        write(value, out, at) {
          const x = readNumber(name, dtype, value);
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
        },
      };
    }
    case 'number': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string has no numeric value`);
      return {
        name,
        columns: [name],
        write(value, out, at) {
          out[at] = readNumber(name, dtype, value) ?? Number.NaN;
        },
      };
    }
    case 'category': {
      const index = new Map(encoding.categories.map((c, i) => [c, i]));
      return {
        name,
        columns: [name],
        write(value, out, at) {
          const key = readCategory(name, dtype, value);
          out[at] = key === null ? Number.NaN : (index.get(key) ?? index.size);
        },
      };
    }
    case 'cyclical': {
      if (dtype === 'string') throw invalid(`feature ${name}: a string cannot be encoded as cyclical`);
      const scale = (2 * Math.PI) / encoding.period;
      return {
        name,
        columns: [`${name}:sin`, `${name}:cos`],
        write(value, out, at) {
          const x = readNumber(name, dtype, value);
          out[at] = x === null ? 0 : Math.sin(x * scale);
          out[at + 1] = x === null ? 0 : Math.cos(x * scale);
        },
      };
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
