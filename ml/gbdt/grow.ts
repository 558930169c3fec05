/**
 * One regression tree grown leaf-wise on histograms (LightGBM's best-first growth):
 * each leaf knows its best split; the leaf with the largest gain splits next, until
 * `maxLeaves` or no split gains. A node's histogram holds, per column and bin, the sum
 * of gradients, of hessians and the row count; a split's children get the smaller
 * child's histogram built from its rows and the larger one's by subtraction.
 *
 * Rows live in `order`: each leaf owns a contiguous range of it, and a split
 * partitions its range stably, so rows stay ascending within a leaf (the binned
 * matrix is then read front to back) and the result does not depend on anything but
 * the inputs.
 */
import type { ColumnBins } from './bins.ts';
import type { RoundThreads, SharedTreeArrays } from './round-threads.ts';

export interface GrowOptions {
  maxLeaves: number;
  /** 0: unlimited. */
  maxDepth: number;
  minLeafRows: number;
  /** L2 penalty on leaf values (λ). */
  l2: number;
}

/** A split in bin space: rows whose bin goes left follow `left`. Children ≥ 0 are splits, < 0 leaves (~index). */
export interface GrownSplit {
  column: number;
  /** Numeric: value bins ≤ bin go left. */
  bin: number;
  /** Categorical: 1 for each value bin that goes left. */
  leftBins: Uint8Array | null;
  missingLeft: boolean;
  gain: number;
  left: number;
  right: number;
}

export interface GrownLeaf {
  /** Newton step −G / (H + λ), before shrinkage. */
  value: number;
  /** The leaf's rows are order[start, end). */
  start: number;
  end: number;
}

export interface GrownTree {
  /** Empty when the root did not split: the tree is leaves[0]. */
  splits: GrownSplit[];
  leaves: GrownLeaf[];
}

/** Where each column's bins start in a histogram (in bins; the last entry is the total). */
export function histogramOffsets(columns: readonly ColumnBins[]): Int32Array {
  const offsets = new Int32Array(columns.length + 1);
  columns.forEach((c, f) => {
    offsets[f + 1] = (offsets[f] as number) + c.values + 1;
  });
  return offsets;
}

/** Binned training rows and their layout: what every tree of a model grows on. */
export interface BinnedRows {
  /** rows × width bins, row-major. */
  bins: Uint8Array;
  rows: number;
  width: number;
  columns: readonly ColumnBins[];
}

const MIN_HESSIAN = 1e-3;
/** Added to a category's hessian when categories are ordered by gradient ratio (LightGBM's cat_smooth). */
const CATEGORY_SMOOTHING = 10;

interface Candidate {
  gain: number;
  column: number;
  bin: number;
  leftBins: Uint8Array | null;
  missingLeft: boolean;
}

interface Leaf {
  start: number;
  end: number;
  depth: number;
  /** Per bin: gradient sum, hessian sum, row count (3 slots each); `slot` names the buffer for the helper thread. */
  hist: Float64Array;
  slot: number;
  g: number;
  h: number;
  best: Candidate | null;
  /** Where this leaf hangs: the split that points at it and on which side, or -1 for the root. */
  parent: number;
  side: 'left' | 'right';
}

/** Reusable buffers for growing trees on one binned matrix. */
export class TreeGrower {
  private readonly offsets: Int32Array;
  private readonly totalBins: number;
  private readonly scratch: Uint32Array;
  /** The bins again, column by column (column f at f × rows), for partitioning. */
  private readonly byColumn: Uint8Array;
  private readonly goesLeft = new Uint8Array(256);
  /** Histogram buffers by slot, and the slots free for a new leaf. */
  private readonly hists: Float64Array[] = [];
  private readonly free: number[] = [];

  /**
   * `order` holds a tree's rows in order[0, count) and is reordered leaf by leaf as it
   * grows; `threads` builds the histograms (over `order`, with the round's gradients).
   */
  constructor(
    private readonly data: BinnedRows,
    private readonly options: GrowOptions,
    private readonly order: Uint32Array,
    private readonly threads: RoundThreads,
  ) {
    this.offsets = histogramOffsets(data.columns);
    this.totalBins = this.offsets[data.width] as number;
    this.scratch = new Uint32Array(data.rows);
    this.byColumn = columnMajor(data);
  }

  /** Grows one tree on rows order[0, count) with these gradients and hessians; reorders `order` leaf by leaf. */
  grow(count: number): GrownTree {
    const order = this.order;
    const root = this.leaf(0, count, 0, -1, 'left');
    this.buildHistogram(root, 0, count);
    this.finish(root);
    const open: Leaf[] = [root];
    const splits: GrownSplit[] = [];
    while (open.length < this.options.maxLeaves) {
      let pick = -1;
      for (let i = 0; i < open.length; i++) {
        const gain = open[i]?.best?.gain ?? 0;
        if (gain > 0 && (pick < 0 || gain > (open[pick]?.best?.gain ?? 0))) pick = i;
      }
      if (pick < 0) break;
      const parent = open[pick] as Leaf;
      const best = parent.best as Candidate;
      const mid = this.partition(order, parent, best);
      const index = splits.length;
      splits.push({ column: best.column, bin: best.bin, leftBins: best.leftBins, missingLeft: best.missingLeft, gain: best.gain, left: 0, right: 0 });
      this.attach(splits, parent, index);
      const left = this.leaf(parent.start, mid, parent.depth + 1, index, 'left');
      const right = this.leaf(mid, parent.end, parent.depth + 1, index, 'right');
      // Build the smaller child; the larger one is the parent minus it (the parent's buffer is reused).
      const [small, large] = mid - parent.start <= parent.end - mid ? [left, right] : [right, left];
      this.buildHistogram(small, small.start, small.end);
      const ph = parent.hist;
      const sh = small.hist;
      for (let i = 0; i < ph.length; i++) ph[i] = (ph[i] as number) - (sh[i] as number);
      this.free.push(large.slot);
      large.hist = ph;
      large.slot = parent.slot;
      this.finish(left);
      this.finish(right);
      open.splice(pick, 1, left, right);
    }
    const leaves: GrownLeaf[] = open.map((l, i) => {
      if (l.parent >= 0) this.attach(splits, l, ~i);
      this.free.push(l.slot);
      return { value: -l.g / (l.h + this.options.l2), start: l.start, end: l.end };
    });
    return { splits, leaves };
  }

  private attach(splits: GrownSplit[], child: Leaf, index: number): void {
    if (child.parent < 0) return;
    const s = splits[child.parent] as GrownSplit;
    if (child.side === 'left') s.left = index;
    else s.right = index;
  }

  private leaf(start: number, end: number, depth: number, parent: number, side: 'left' | 'right'): Leaf {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.hists.length;
      const hist = new Float64Array(new SharedArrayBuffer(this.totalBins * 3 * 8));
      this.hists.push(hist);
      this.threads.register(slot, hist);
    }
    return { start, end, depth, hist: this.hists[slot] as Float64Array, slot, g: 0, h: 0, best: null, parent, side };
  }

  private buildHistogram(leaf: Leaf, start: number, end: number): void {
    this.threads.build(leaf.slot, leaf.hist, start, end);
  }

  /** The leaf's totals and its best split (null when it may not or cannot split). */
  private finish(leaf: Leaf): void {
    const hist = leaf.hist;
    // Any column's bins sum to the leaf's totals.
    const first = this.data.columns[0];
    let g = 0;
    let h = 0;
    for (let b = 0; b <= (first?.values ?? -1); b++) {
      g += hist[b * 3] as number;
      h += hist[b * 3 + 1] as number;
    }
    leaf.g = g;
    leaf.h = h;
    const rows = leaf.end - leaf.start;
    const { maxDepth, minLeafRows } = this.options;
    leaf.best = rows < 2 * minLeafRows || (maxDepth > 0 && leaf.depth >= maxDepth) ? null : this.bestSplit(hist, g, h, rows);
  }

  private bestSplit(hist: Float64Array, g: number, h: number, rows: number): Candidate | null {
    const { l2, minLeafRows } = this.options;
    const parentScore = (g * g) / (h + l2);
    let best: Candidate | null = null;
    const consider = (gl: number, hl: number, cl: number, make: (gain: number) => Candidate): void => {
      const gr = g - gl;
      const hr = h - hl;
      const cr = rows - cl;
      if (cl < minLeafRows || cr < minLeafRows || hl < MIN_HESSIAN || hr < MIN_HESSIAN) return;
      const gain = (gl * gl) / (hl + l2) + (gr * gr) / (hr + l2) - parentScore;
      if (gain > 1e-12 && (best === null || gain > best.gain)) best = make(gain);
    };
    this.data.columns.forEach((column, f) => {
      const base = (this.offsets[f] as number) * 3;
      const values = column.values;
      const mg = hist[base + values * 3] as number;
      const mh = hist[base + values * 3 + 1] as number;
      const mc = hist[base + values * 3 + 2] as number;
      if (!column.categorical) {
        let gl = 0;
        let hl = 0;
        let cl = 0;
        for (let b = 0; b < values; b++) {
          gl += hist[base + b * 3] as number;
          hl += hist[base + b * 3 + 1] as number;
          cl += hist[base + b * 3 + 2] as number;
          const bin = b;
          consider(gl, hl, cl, (gain) => ({ gain, column: f, bin, leftBins: null, missingLeft: false }));
          if (mc > 0) consider(gl + mg, hl + mh, cl + mc, (gain) => ({ gain, column: f, bin, leftBins: null, missingLeft: true }));
        }
        return;
      }
      // Categories (the missing bin as one more) ordered by gradient ratio; each prefix is a candidate left set.
      const present: number[] = [];
      for (let b = 0; b <= values; b++) if ((hist[base + b * 3 + 2] as number) > 0) present.push(b);
      if (present.length < 2) return;
      const ratio = (b: number) => (hist[base + b * 3] as number) / ((hist[base + b * 3 + 1] as number) + CATEGORY_SMOOTHING);
      present.sort((a, b) => ratio(a) - ratio(b) || a - b);
      let gl = 0;
      let hl = 0;
      let cl = 0;
      for (let i = 0; i + 1 < present.length; i++) {
        const b = present[i] as number;
        gl += hist[base + b * 3] as number;
        hl += hist[base + b * 3 + 1] as number;
        cl += hist[base + b * 3 + 2] as number;
        const prefix = i + 1;
        consider(gl, hl, cl, (gain) => {
          const leftBins = new Uint8Array(values + 1);
          for (let j = 0; j < prefix; j++) leftBins[present[j] as number] = 1;
          return { gain, column: f, bin: -1, leftBins, missingLeft: leftBins[values] === 1 };
        });
      }
    });
    return best;
  }

  /** Stable partition of the leaf's rows: those going left first. Returns where the right ones start. */
  private partition(order: Uint32Array, leaf: Leaf, split: Candidate): number {
    const f = split.column;
    // The split column's bins alone: a leaf's rows are sparse in the matrix, and one column
    // (rows bytes) stays in cache where the row-major matrix (rows × width) does not.
    const bins = this.byColumn.subarray(f * this.data.rows, (f + 1) * this.data.rows);
    // Where each bin goes, as a table: the loop below then has no branch to mispredict.
    const goesLeft = this.goesLeft;
    fillGoesLeft(goesLeft, 0, split, (this.data.columns[f] as ColumnBins).values);
    const scratch = this.scratch;
    let l = leaf.start;
    let r = 0;
    for (let k = leaf.start; k < leaf.end; k++) {
      const row = order[k] as number;
      const left = goesLeft[bins[row] as number] as number;
      order[l] = row;
      scratch[r] = row;
      l += left;
      r += 1 - left;
    }
    order.set(scratch.subarray(0, r), l);
    return l;
  }
}

/** The bins column by column: column f's rows at [f × rows, (f + 1) × rows). */
function columnMajor({ bins, rows, width }: BinnedRows): Uint8Array {
  const out = new Uint8Array(rows * width);
  for (let f = 0; f < width; f++) {
    const base = f * rows;
    for (let r = 0, at = f; r < rows; r++, at += width) out[base + r] = bins[at] as number;
  }
  return out;
}

/** How a split sends a bin: the fields of a split that decide it. */
type SplitRule = Pick<GrownSplit, 'bin' | 'leftBins' | 'missingLeft'>;

/**
 * Where each bin of a split's column goes, as out[at + b] = 1 (left) or 0 (right) for
 * b in 0…missing (`missing` is the column's missing bin): categorical splits by their
 * left set, numeric ones by `b ≤ bin`, the missing bin by missingLeft. The one rule for
 * growing (partition) and for scoring binned rows (loadTree).
 */
export function fillGoesLeft(out: Uint8Array, at: number, split: SplitRule, missing: number): void {
  for (let b = 0; b <= missing; b++) out[at + b] = split.leftBins ? (split.leftBins[b] as number) : b === missing ? (split.missingLeft ? 1 : 0) : b <= split.bin ? 1 : 0;
}

/** Writes a grown tree and its (shrunk) leaf values into shared arrays, to score binned rows (scoreRange). */
export function loadTree(out: SharedTreeArrays, tree: GrownTree, columns: readonly ColumnBins[], values: Float32Array): void {
  out.splits[0] = tree.splits.length;
  tree.splits.forEach((s, i) => {
    out.column[i] = s.column;
    out.child[2 * i] = s.left;
    out.child[2 * i + 1] = s.right;
    fillGoesLeft(out.goesLeft, i * 256, s, (columns[s.column] as ColumnBins).values);
  });
  out.values.set(values);
}
