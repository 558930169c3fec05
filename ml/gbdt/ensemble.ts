/**
 * A trained gradient-boosted tree ensemble as flat typed arrays, its prediction, and
 * its form as a ModelArtifact (the registry's and the checkpoints' format), so a tree
 * model is stored, hashed, verified and loaded exactly like a TensorFlow.js one.
 *
 * Trees test the encoded inputs themselves (signature.ts's tree encodings: a number,
 * NaN for missing; a category index): a numeric split sends `x ≤ threshold` left, a
 * categorical one the categories in its set, and a missing value the side it learned.
 */
import { invalid } from '../../core/errors.ts';
import type { ModelArtifact } from '../artifact.ts';
import type { OutputKind } from '../model.ts';
import { categoryBin, type ColumnBins } from './bins.ts';
import type { GrownTree } from './grow.ts';

export const GBDT_FORMAT = 'fti-gbdt';
const FORMAT_VERSION = 1;

/** Per-node flags. */
const MISSING_LEFT = 1;
const CATEGORICAL = 2;

export interface Ensemble {
  outputKind: OutputKind;
  /** Input columns (the encoder's width). */
  width: number;
  /** Value bins of each categorical column (0 for numeric ones): a category index outside them is "other". */
  categoryValues: Int32Array;
  /** The raw score before any tree: the log-odds (classifier) or mean (regressor) of the training labels. */
  baseScore: number;
  /** Per tree, its root: ≥ 0 a node, < 0 a leaf (~index). */
  roots: Int32Array;
  feature: Int32Array;
  threshold: Float32Array;
  flags: Int32Array;
  left: Int32Array;
  right: Int32Array;
  /** Categorical nodes: the first word of their category set in categoryWords (−1 for numeric nodes). */
  categoryOffset: Int32Array;
  /** Bit i of a node's set: category bin i goes left. */
  categoryWords: Uint32Array;
  /** Shrunk leaf values. */
  leafValue: Float32Array;
}

/** Appends trees one at a time, converting their bin-space splits to thresholds and category sets. */
export class EnsembleBuilder {
  private readonly roots: number[] = [];
  private readonly feature: number[] = [];
  private readonly threshold: number[] = [];
  private readonly flags: number[] = [];
  private readonly left: number[] = [];
  private readonly right: number[] = [];
  private readonly categoryOffset: number[] = [];
  private readonly categoryWords: number[] = [];
  private readonly leafValue: number[] = [];

  constructor(
    readonly outputKind: OutputKind,
    private readonly columns: readonly ColumnBins[],
    readonly baseScore: number,
  ) {}

  get trees(): number {
    return this.roots.length;
  }

  /** Continues from a stored ensemble (a checkpoint), keeping its first `trees` trees. */
  static from(ensemble: Ensemble, columns: readonly ColumnBins[], trees = ensemble.roots.length): EnsembleBuilder {
    const b = new EnsembleBuilder(ensemble.outputKind, columns, ensemble.baseScore);
    for (let t = 0; t < trees; t++) b.copyTree(ensemble, ensemble.roots[t] as number);
    return b;
  }

  /** Adds a grown tree with its leaf values times `shrinkage`; returns the shrunk leaf values in leaf order. */
  add(tree: GrownTree, shrinkage: number): Float32Array {
    const nodeBase = this.feature.length;
    const leafBase = this.leafValue.length;
    const child = (c: number) => (c >= 0 ? nodeBase + c : ~(leafBase + ~c));
    for (const s of tree.splits) {
      const column = this.columns[s.column] as ColumnBins;
      this.feature.push(s.column);
      this.left.push(child(s.left));
      this.right.push(child(s.right));
      if (s.leftBins) {
        this.flags.push(CATEGORICAL | (s.missingLeft ? MISSING_LEFT : 0));
        this.threshold.push(0);
        this.categoryOffset.push(this.categoryWords.length);
        const words = new Uint32Array(Math.ceil(column.values / 32));
        for (let b = 0; b < column.values; b++) if (s.leftBins[b] === 1) words[b >>> 5] = (words[b >>> 5] as number) | (1 << (b & 31));
        this.categoryWords.push(...words);
      } else {
        this.flags.push(s.missingLeft ? MISSING_LEFT : 0);
        // The last value bin going left means every number goes left.
        this.threshold.push(s.bin < column.thresholds.length ? (column.thresholds[s.bin] as number) : Number.POSITIVE_INFINITY);
        this.categoryOffset.push(-1);
      }
    }
    const values = Float32Array.from(tree.leaves, (l) => l.value * shrinkage);
    this.leafValue.push(...values);
    this.roots.push(tree.splits.length > 0 ? nodeBase : ~leafBase);
    return values;
  }

  build(): Ensemble {
    return {
      outputKind: this.outputKind,
      width: this.columns.length,
      categoryValues: Int32Array.from(this.columns, (c) => (c.categorical ? c.values : 0)),
      baseScore: this.baseScore,
      roots: Int32Array.from(this.roots),
      feature: Int32Array.from(this.feature),
      threshold: Float32Array.from(this.threshold),
      flags: Int32Array.from(this.flags),
      left: Int32Array.from(this.left),
      right: Int32Array.from(this.right),
      categoryOffset: Int32Array.from(this.categoryOffset),
      categoryWords: Uint32Array.from(this.categoryWords),
      leafValue: Float32Array.from(this.leafValue),
    };
  }

  private copyTree(e: Ensemble, root: number): void {
    const nodeBase = this.feature.length;
    const leafBase = this.leafValue.length;
    if (root < 0) {
      this.leafValue.push(e.leafValue[~root] as number);
      this.roots.push(~leafBase);
      return;
    }
    // A tree's nodes and leaves are contiguous: map them by offset from its first ones.
    const nodes: number[] = [];
    const leaves: number[] = [];
    const walk = (n: number) => {
      if (n < 0) return void leaves.push(~n);
      nodes.push(n);
      walk(e.left[n] as number);
      walk(e.right[n] as number);
    };
    walk(root);
    const firstNode = Math.min(...nodes);
    const firstLeaf = Math.min(...leaves);
    const child = (c: number) => (c >= 0 ? nodeBase + c - firstNode : ~(leafBase + ~c - firstLeaf));
    for (let n = firstNode; n < firstNode + nodes.length; n++) {
      this.feature.push(e.feature[n] as number);
      this.threshold.push(e.threshold[n] as number);
      this.flags.push(e.flags[n] as number);
      this.left.push(child(e.left[n] as number));
      this.right.push(child(e.right[n] as number));
      const offset = e.categoryOffset[n] as number;
      if (offset < 0) {
        this.categoryOffset.push(-1);
      } else {
        this.categoryOffset.push(this.categoryWords.length);
        const words = Math.ceil((e.categoryValues[e.feature[n] as number] as number) / 32);
        this.categoryWords.push(...e.categoryWords.subarray(offset, offset + words));
      }
    }
    for (let l = firstLeaf; l < firstLeaf + leaves.length; l++) this.leafValue.push(e.leafValue[l] as number);
    this.roots.push(nodeBase + root - firstNode);
  }
}

/** The leaf value one tree gives the row at x[at, at + width). */
export function treeValue(e: Ensemble, root: number, x: Float32Array, at: number): number {
  let n = root;
  while (n >= 0) {
    const v = x[at + (e.feature[n] as number)] as number;
    const flags = e.flags[n] as number;
    let goLeft: boolean;
    if (Number.isNaN(v)) goLeft = (flags & MISSING_LEFT) !== 0;
    else if (flags & CATEGORICAL) {
      const bin = categoryBin(v, e.categoryValues[e.feature[n] as number] as number);
      goLeft = (((e.categoryWords[(e.categoryOffset[n] as number) + (bin >>> 5)] as number) >>> (bin & 31)) & 1) === 1;
    } else goLeft = v <= (e.threshold[n] as number);
    n = goLeft ? (e.left[n] as number) : (e.right[n] as number);
  }
  return e.leafValue[~n] as number;
}

/** Raw scores (log-odds or the regression value) of `size` rows, using the first `trees` trees. */
export function rawScores(e: Ensemble, x: Float32Array, size: number, trees = e.roots.length): Float64Array {
  if (x.length !== size * e.width) throw invalid(`expected ${size}×${e.width} values, got ${x.length}`);
  const out = new Float64Array(size).fill(e.baseScore);
  for (let t = 0; t < trees; t++) {
    const root = e.roots[t] as number;
    for (let r = 0; r < size; r++) out[r] = (out[r] as number) + treeValue(e, root, x, r * e.width);
  }
  return out;
}

/** Model outputs: probabilities for a classifier, values for a regressor. */
export function predictEnsemble(e: Ensemble, x: Float32Array, size: number): Float32Array {
  const raw = rawScores(e, x, size);
  return e.outputKind === 'binary_classifier' ? Float32Array.from(raw, sigmoid) : Float32Array.from(raw);
}

export function sigmoid(z: number): number {
  return 1 / (1 + Math.exp(-z));
}

const ARRAYS = ['roots', 'feature', 'threshold', 'flags', 'left', 'right', 'categoryOffset', 'categoryWords', 'leafValue', 'categoryValues'] as const;
type ArrayName = (typeof ARRAYS)[number];

/** The ensemble as a registry artifact: a small JSON header as the topology, the arrays as weights. */
export function ensembleArtifact(e: Ensemble): ModelArtifact {
  const parts = ARRAYS.map((name) => ({ name, array: e[name] }));
  const total = parts.reduce((n, p) => n + p.array.byteLength, 0);
  const weightData = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    weightData.set(new Uint8Array(p.array.buffer, p.array.byteOffset, p.array.byteLength), offset);
    offset += p.array.byteLength;
  }
  return {
    modelTopology: { format: GBDT_FORMAT, formatVersion: FORMAT_VERSION, outputKind: e.outputKind, width: e.width, baseScore: e.baseScore, trees: e.roots.length },
    weightSpecs: parts.map((p) => ({ name: p.name, shape: [p.array.length], dtype: p.array instanceof Float32Array ? 'float32' : 'int32' })),
    weightData,
  };
}

export function isEnsembleArtifact(artifact: ModelArtifact): boolean {
  return artifact.modelTopology['format'] === GBDT_FORMAT;
}

export function ensembleFromArtifact(artifact: ModelArtifact): Ensemble {
  const t = artifact.modelTopology;
  if (t['format'] !== GBDT_FORMAT || t['formatVersion'] !== FORMAT_VERSION) throw invalid(`not a version ${FORMAT_VERSION} ${GBDT_FORMAT} artifact`);
  const outputKind = t['outputKind'];
  const width = t['width'];
  const baseScore = t['baseScore'];
  if ((outputKind !== 'binary_classifier' && outputKind !== 'regressor') || typeof width !== 'number' || typeof baseScore !== 'number') throw invalid(`a ${GBDT_FORMAT} artifact with a malformed header`);
  // Copy to an aligned buffer: the bytes may sit at any offset of a larger one.
  const bytes = artifact.weightData.slice();
  const arrays = new Map<string, ArrayBuffer>();
  let offset = 0;
  for (const spec of artifact.weightSpecs) {
    const length = (spec.shape[0] ?? 0) * 4;
    arrays.set(spec.name, bytes.buffer.slice(offset, offset + length));
    offset += length;
  }
  if (offset !== bytes.byteLength) throw invalid(`a ${GBDT_FORMAT} artifact whose weights do not add up`);
  const get = (name: ArrayName): ArrayBuffer => {
    const a = arrays.get(name);
    if (!a) throw invalid(`a ${GBDT_FORMAT} artifact without ${name}`);
    return a;
  };
  const e: Ensemble = {
    outputKind,
    width,
    baseScore,
    roots: new Int32Array(get('roots')),
    feature: new Int32Array(get('feature')),
    threshold: new Float32Array(get('threshold')),
    flags: new Int32Array(get('flags')),
    left: new Int32Array(get('left')),
    right: new Int32Array(get('right')),
    categoryOffset: new Int32Array(get('categoryOffset')),
    categoryWords: new Uint32Array(get('categoryWords')),
    leafValue: new Float32Array(get('leafValue')),
    categoryValues: new Int32Array(get('categoryValues')),
  };
  if (e.categoryValues.length !== width || e.feature.some((f) => f < 0 || f >= width)) throw invalid(`a ${GBDT_FORMAT} artifact with a feature outside its ${width} inputs`);
  return e;
}
