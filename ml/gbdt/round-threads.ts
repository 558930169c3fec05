/**
 * A boosting round's per-row work on two cores: building leaf histograms (the hot
 * loop of tree growing), the gradients, and adding the new tree's values to the
 * scores of the rows it was not grown on.
 *
 * - Histograms split by columns: each thread adds its columns' gradients, hessians and
 *   counts over the leaf's rows, in the same row order.
 * - Gradients and scores split by rows, at the middle row. The loss is summed per half
 *   and the halves added, with one thread or two.
 *
 * So the trees and the logged losses are exactly those of one thread.
 *
 * The helper shares every array it reads or writes (SharedArrayBuffers) and is driven
 * synchronously through Atomics: tree growing is a tight synchronous loop, so the
 * helper cannot wait for messages on an event loop. Histogram buffers it has not seen
 * yet reach it through a MessagePort read with receiveMessageOnPort, before the task
 * that needs them.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';

// The three functions below are self-contained (no imports, no closures, no inner
// functions): the helper thread runs their very source.

/**
 * Adds rows order[start, end) to the histogram of columns [from, to): per bin, three
 * slots (gradient sum, hessian sum, row count) at (offsets[f] + bin) · 3. It zeroes
 * those columns first. `gradHess` holds row r's gradient at 2r and its hessian at
 * 2r + 1: side by side, a row's pair is one cache miss where two arrays cost two
 * (about a tenth of a round on the flights' 2.1M rows).
 */
export function accumulate(hist: Float64Array, bins: Uint8Array, width: number, offsets: Int32Array, order: Uint32Array, start: number, end: number, gradHess: Float32Array, from: number, to: number): void {
  hist.fill(0, (offsets[from] as number) * 3, (offsets[to] as number) * 3);
  for (let k = start; k < end; k++) {
    const r = order[k] as number;
    const g = gradHess[2 * r] as number;
    const h = gradHess[2 * r + 1] as number;
    const base = r * width;
    for (let f = from; f < to; f++) {
      const at = ((offsets[f] as number) + (bins[base + f] as number)) * 3;
      hist[at] = (hist[at] as number) + g;
      hist[at + 1] = (hist[at + 1] as number) + h;
      hist[at + 2] = (hist[at + 2] as number) + 1;
    }
  }
}

/**
 * First and second derivatives of the loss at the raw scores of rows [from, to), row
 * i's into gradHess[2i] and gradHess[2i + 1]; returns the sum of those rows' losses.
 * `classifier` 1: binary log loss (the score is a logit), 0: squared error.
 */
export function gradientRange(classifier: number, score: Float64Array, y: Float32Array, gradHess: Float32Array, from: number, to: number): number {
  let sum = 0;
  if (classifier === 0) {
    for (let i = from; i < to; i++) {
      const d = (score[i] as number) - (y[i] as number);
      gradHess[2 * i] = d;
      gradHess[2 * i + 1] = 1;
      sum += d * d;
    }
    return sum;
  }
  for (let i = from; i < to; i++) {
    // The ensemble's sigmoid, written out.
    const p = 1 / (1 + Math.exp(-(score[i] as number)));
    const label = y[i] as number;
    gradHess[2 * i] = p - label;
    gradHess[2 * i + 1] = Math.max(p * (1 - p), 1e-16);
    sum -= Math.log(Math.max(label > 0.5 ? p : 1 - p, 1e-15));
  }
  return sum;
}

/**
 * Adds tree.values[leaf] to score[r] for the rows r in [from, to) of `bins` (row-major,
 * `width` a row) whose skip[r] is 0 (every row when skip is null). The leaf is found
 * by walking the tree's arrays: split n reads column[n], sends bin b left when
 * goesLeft[n · 256 + b] is 1, and goes on at child[2n] (left) or child[2n + 1]; a child
 * below 0 is leaf ~child. With no splits every row is in leaf 0.
 */
export function scoreRange(tree: SharedTreeArrays, bins: Uint8Array, width: number, score: Float64Array, skip: Uint8Array | null, from: number, to: number): void {
  const { column, child, goesLeft, values } = tree;
  const splits = tree.splits[0] as number;
  for (let r = from, at = from * width; r < to; r++, at += width) {
    if (skip !== null && skip[r] !== 0) continue;
    let n = splits === 0 ? -1 : 0;
    while (n >= 0) n = child[2 * n + 1 - (goesLeft[(n << 8) + (bins[at + (column[n] as number)] as number)] as number)] as number;
    score[r] = (score[r] as number) + (values[~n] as number);
  }
}

/** A tree as flat arrays on SharedArrayBuffers (the layout scoreRange reads), refilled each round. */
export interface SharedTreeArrays {
  /** How many splits the tree has: [count]. */
  splits: Int32Array;
  column: Int32Array;
  child: Int32Array;
  goesLeft: Uint8Array;
  /** Leaf values (shrunk). */
  values: Float32Array;
}

/** Room on SharedArrayBuffers for a tree of at most `maxLeaves` leaves (grow.ts' loadTree fills it each round). */
export function sharedTreeArrays(maxLeaves: number): SharedTreeArrays {
  const splits = Math.max(maxLeaves - 1, 1);
  return {
    splits: new Int32Array(new SharedArrayBuffer(4)),
    column: new Int32Array(new SharedArrayBuffer(splits * 4)),
    child: new Int32Array(new SharedArrayBuffer(splits * 2 * 4)),
    goesLeft: new Uint8Array(new SharedArrayBuffer(splits * 256)),
    values: new Float32Array(new SharedArrayBuffer(maxLeaves * 4)),
  };
}

/** The arrays both threads share, each on a SharedArrayBuffer. */
export interface SharedRows {
  bins: Uint8Array;
  width: number;
  offsets: Int32Array;
  order: Uint32Array;
  gradHess: Float32Array;
  /** Raw scores of the training rows, their labels, and 1 for the rows this round's tree was grown on. */
  score: Float64Array;
  y: Float32Array;
  inBag: Uint8Array;
  tree: SharedTreeArrays;
}

/** Below this many rows a leaf's histogram is built on one thread (the handoff costs more). */
const MIN_SHARED_ROWS = 20_000;

// Control words: [state, task, a, b, c, d, e]; state 0 idle, 1 task posted, 2 done, 3 exit.
// Tasks: 0 histogram (slot, start, end, from, to), 1 gradients (classifier, from, to: the
// loss sum into result[0]), 2 out-of-bag scores (from, to).
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const accumulate = ${accumulate.toString()};
const gradientRange = ${gradientRange.toString()};
const scoreRange = ${scoreRange.toString()};
const { control, result, bins, width, offsets, order, gradHess, score, y, inBag, tree, port } = workerData;
const hists = [];
for (;;) {
  let state;
  while ((state = Atomics.load(control, 0)) !== 1 && state !== 3) Atomics.wait(control, 0, state);
  if (state === 3) break;
  const task = control[1];
  if (task === 0) {
    while (hists[control[2]] === undefined) {
      const m = receiveMessageOnPort(port);
      if (m) hists[m.message.slot] = m.message.hist;
    }
    accumulate(hists[control[2]], bins, width, offsets, order, control[3], control[4], gradHess, control[5], control[6]);
  } else if (task === 1) {
    result[0] = gradientRange(control[2], score, y, gradHess, control[3], control[4]);
  } else {
    scoreRange(tree, bins, width, score, inBag, control[2], control[3]);
  }
  Atomics.store(control, 0, 2);
  Atomics.notify(control, 0);
}
`;

/** The helper thread: it takes the second half of every task (the later columns, the later rows). */
class Helper {
  private readonly control = new Int32Array(new SharedArrayBuffer(7 * 4));
  readonly result = new Float64Array(new SharedArrayBuffer(8));
  private readonly port: MessagePort;
  readonly worker: Worker;

  constructor(rows: SharedRows) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { control: this.control, result: this.result, ...rows, port: port2 }, transferList: [port2] });
  }

  register(slot: number, hist: Float64Array): void {
    this.port.postMessage({ slot, hist });
  }

  /** Posts a task; `wait` blocks until it is done. */
  post(task: number, ...args: number[]): void {
    const c = this.control;
    c[1] = task;
    args.forEach((v, i) => {
      c[2 + i] = v;
    });
    Atomics.store(c, 0, 1);
    Atomics.notify(c, 0);
  }

  wait(): void {
    Atomics.wait(this.control, 0, 1);
    Atomics.store(this.control, 0, 0);
  }

  async close(): Promise<void> {
    Atomics.store(this.control, 0, 3);
    Atomics.notify(this.control, 0);
    this.port.close();
    await this.worker.terminate();
  }
}

/** A round's per-row work, on this thread and a helper where there are two cores. */
export class RoundThreads {
  private readonly split: number;
  private readonly middle: number;

  private constructor(
    private readonly rows: SharedRows,
    private readonly helper: Helper | null,
  ) {
    this.split = Math.ceil(rows.width / 2);
    this.middle = Math.ceil(rows.y.length / 2);
  }

  /** Starts the helper thread where `cores` ≥ 2; with one core everything runs on this thread, the same way. */
  static async start(rows: SharedRows, cores: number): Promise<RoundThreads> {
    if (cores < 2) return new RoundThreads(rows, null);
    const helper = new Helper(rows);
    await new Promise<void>((resolve, reject) => {
      helper.worker.once('online', resolve);
      helper.worker.once('error', reject);
    });
    // Once running it must not keep the process alive by itself (close() ends it).
    helper.worker.unref();
    return new RoundThreads(rows, helper);
  }

  /** Tells the helper about a histogram buffer (on a SharedArrayBuffer) before its first use. */
  register(slot: number, hist: Float64Array): void {
    this.helper?.register(slot, hist);
  }

  /** Builds the histogram in `slot` (buffer `hist`) for order[start, end), every column. */
  build(slot: number, hist: Float64Array, start: number, end: number): void {
    const { bins, width, offsets, order, gradHess } = this.rows;
    if (!this.helper || end - start < MIN_SHARED_ROWS) {
      accumulate(hist, bins, width, offsets, order, start, end, gradHess, 0, width);
      return;
    }
    this.helper.post(0, slot, start, end, this.split, width);
    accumulate(hist, bins, width, offsets, order, start, end, gradHess, 0, this.split);
    this.helper.wait();
  }

  /** Every row's gradient and hessian at its score; returns the sum of the rows' losses. */
  gradients(classifier: boolean): number {
    const { score, y, gradHess } = this.rows;
    const kind = classifier ? 1 : 0;
    const n = y.length;
    if (!this.helper) return gradientRange(kind, score, y, gradHess, 0, this.middle) + gradientRange(kind, score, y, gradHess, this.middle, n);
    this.helper.post(1, kind, this.middle, n);
    const first = gradientRange(kind, score, y, gradHess, 0, this.middle);
    this.helper.wait();
    return first + (this.helper.result[0] as number);
  }

  /** Adds the shared tree's leaf values to the scores of the rows not in this round's bag; `meanwhile` runs on this thread while the helper scores its half. */
  scoreOutOfBag(meanwhile: () => void): void {
    const { tree, bins, width, score, inBag } = this.rows;
    const n = score.length;
    if (!this.helper) {
      meanwhile();
      scoreRange(tree, bins, width, score, inBag, 0, n);
      return;
    }
    this.helper.post(2, this.middle, n);
    meanwhile();
    scoreRange(tree, bins, width, score, inBag, 0, this.middle);
    this.helper.wait();
  }

  async close(): Promise<void> {
    await this.helper?.close();
  }
}
