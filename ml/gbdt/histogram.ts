/**
 * Building a leaf's histogram — the hot loop of tree growing — on two cores. The
 * columns are split between this thread and one helper thread: each adds its columns'
 * gradients, hessians and counts over the leaf's rows, in the same row order, so the
 * sums (and the trees) are exactly those of one thread.
 *
 * The helper shares every array it reads or writes (SharedArrayBuffers) and is driven
 * synchronously through Atomics: tree growing is a tight synchronous loop, so the
 * helper cannot wait for messages on an event loop. Histogram buffers it has not seen
 * yet reach it through a MessagePort read with receiveMessageOnPort, before the task
 * that needs them.
 */
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';

/**
 * Adds rows order[start, end) to the histogram of columns [from, to): per bin, three
 * slots (gradient sum, hessian sum, row count) at (offsets[f] + bin) · 3. It zeroes
 * those columns first. Self-contained (no imports, no closures): the helper thread
 * runs this very function's source.
 */
export function accumulate(hist: Float64Array, bins: Uint8Array, width: number, offsets: Int32Array, order: Uint32Array, start: number, end: number, grad: Float32Array, hess: Float32Array, from: number, to: number): void {
  hist.fill(0, (offsets[from] as number) * 3, (offsets[to] as number) * 3);
  for (let k = start; k < end; k++) {
    const r = order[k] as number;
    const g = grad[r] as number;
    const h = hess[r] as number;
    const base = r * width;
    for (let f = from; f < to; f++) {
      const at = ((offsets[f] as number) + (bins[base + f] as number)) * 3;
      hist[at] = (hist[at] as number) + g;
      hist[at + 1] = (hist[at + 1] as number) + h;
      hist[at + 2] = (hist[at + 2] as number) + 1;
    }
  }
}

/** The arrays both threads share, each on a SharedArrayBuffer. */
export interface SharedRows {
  bins: Uint8Array;
  width: number;
  offsets: Int32Array;
  order: Uint32Array;
  grad: Float32Array;
  hess: Float32Array;
}

/** Below this many rows a leaf's histogram is built on one thread (the handoff costs more). */
const MIN_SHARED_ROWS = 20_000;

// Control words: [state, slot, start, end, from, to]; state 0 idle, 1 task posted, 2 done, 3 exit.
const HELPER_SOURCE = `
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const accumulate = ${accumulate.toString()};
const { control, bins, width, offsets, order, grad, hess, port } = workerData;
const hists = [];
for (;;) {
  let state;
  while ((state = Atomics.load(control, 0)) !== 1 && state !== 3) Atomics.wait(control, 0, state);
  if (state === 3) break;
  while (hists[control[1]] === undefined) {
    const m = receiveMessageOnPort(port);
    if (m) hists[m.message.slot] = m.message.hist;
  }
  accumulate(hists[control[1]], bins, width, offsets, order, control[2], control[3], grad, hess, control[4], control[5]);
  Atomics.store(control, 0, 2);
  Atomics.notify(control, 0);
}
`;

/** The helper thread; `split` is the first column it builds. */
export class HistogramHelper {
  private readonly control = new Int32Array(new SharedArrayBuffer(6 * 4));
  private readonly port: MessagePort;
  private readonly worker: Worker;
  private readonly split: number;

  private constructor(private readonly rows: SharedRows) {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    this.split = Math.ceil(rows.width / 2);
    this.worker = new Worker(HELPER_SOURCE, { eval: true, workerData: { control: this.control, ...rows, port: port2 }, transferList: [port2] });
  }

  /** A helper once its thread runs, or null where there is one core or one column. */
  static async start(rows: SharedRows, cores: number): Promise<HistogramHelper | null> {
    if (cores < 2 || rows.width < 2) return null;
    const helper = new HistogramHelper(rows);
    await new Promise<void>((resolve, reject) => {
      helper.worker.once('online', resolve);
      helper.worker.once('error', reject);
    });
    // Once running it must not keep the process alive by itself (close() ends it).
    helper.worker.unref();
    return helper;
  }

  /** Tells the helper about a histogram buffer (on a SharedArrayBuffer) before its first use. */
  register(slot: number, hist: Float64Array): void {
    this.port.postMessage({ slot, hist });
  }

  /** Builds the histogram in `slot` (buffer `hist`) for order[start, end), the columns shared between both threads. */
  build(slot: number, hist: Float64Array, start: number, end: number): void {
    const { bins, width, offsets, order, grad, hess } = this.rows;
    if (end - start < MIN_SHARED_ROWS) {
      accumulate(hist, bins, width, offsets, order, start, end, grad, hess, 0, width);
      return;
    }
    const c = this.control;
    c[1] = slot;
    c[2] = start;
    c[3] = end;
    c[4] = this.split;
    c[5] = width;
    Atomics.store(c, 0, 1);
    Atomics.notify(c, 0);
    accumulate(hist, bins, width, offsets, order, start, end, grad, hess, 0, this.split);
    Atomics.wait(c, 0, 1);
    Atomics.store(c, 0, 0);
  }

  async close(): Promise<void> {
    Atomics.store(this.control, 0, 3);
    Atomics.notify(this.control, 0);
    this.port.close();
    await this.worker.terminate();
  }
}
