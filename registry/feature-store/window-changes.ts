/**
 * The change points of one entity's windowed aggregates, from its source events: the
 * arithmetic of aggregates.ts, in memory. No database here.
 *
 * An event enters a window at its entry instant (its event time when it was known by
 * then, else one microsecond before it became known) if it became known before it
 * would have left the window, and leaves it at its event time plus the window. Every
 * instant at which an event enters (whether or not any window takes it) or leaves is a
 * change point; the state just after it is that of the events entered and not left.
 *
 * Sums are kept as Postgres' `sum(sum(x)) over (order by instant)` kept them (the SQL
 * statement this replaced): the deltas of one instant summed first, then added to the
 * running sum. For values whose sums are exact (whole minutes, 0/1 flags, counts) any
 * order gives the same bits; for others, Postgres' own order within an instant was that
 * of its hash table, no more defined than this one. One difference, a fix: NaN and
 * infinities are counted apart from the finite sum (INPUT_STATE), so a sum is a number
 * again once they have left the window; the running sum in SQL stayed NaN for good.
 */

/** How each output column is computed, over window `window` (an index into the windows): a count of events, or of an input's present values. */
export type WindowOutput = { fn: 'count'; window: number; input?: number } | { fn: 'avg' | 'sum' | 'min' | 'max'; window: number; input: number };

export interface WindowPlan {
  /** Window lengths in microseconds. */
  windows: number[];
  /** How many metric inputs each event carries. */
  inputs: number;
  outputs: WindowOutput[];
}

/**
 * One entity's events, in event-time order (µs since 1970). Input i of event e is
 * `inputs[i][e]` when `present[i][e]` is 1; when it is 0 (a null), `inputs[i][e]` is 0.
 */
export interface EntityEvents {
  eventTime: number[];
  knownAt: number[];
  inputs: number[][];
  present: number[][];
}

/**
 * Calls `emit` for each change point at or after `from`, in time order, with its
 * outputs: output o is `values[o]`, or null where `nulls[o]` is 1 (both reused between
 * calls: read them before returning; typed arrays, so that no value is boxed).
 */
export function entityChangePoints(events: EntityEvents, plan: WindowPlan, from: number, emit: (at: number, values: Float64Array, nulls: Uint8Array) => void): void {
  const { eventTime, knownAt, inputs, present } = events;
  const n = eventTime.length;
  const W = plan.windows.length;
  const I = plan.inputs;
  // Per window: the row count, and per input the sum of its finite values, the count of
  // its present values, and how many are NaN, +Infinity and -Infinity (INPUT_STATE).
  const stride = 1 + INPUT_STATE * I;
  const running = new Float64Array(W * stride).fill(-0);
  const delta = new Float64Array(W * stride);
  const values = new Float64Array(plan.outputs.length);
  const nulls = new Uint8Array(plan.outputs.length);
  const lengths = Float64Array.from(plan.windows);

  // Entries, by entry instant; exits of window w, by event time (the events' order).
  const entryAt = new Float64Array(n);
  for (let e = 0; e < n; e++) {
    const te = eventTime[e] as number;
    const ta = knownAt[e] as number;
    entryAt[e] = ta > te ? ta - 1 : te;
  }
  const entries = new Uint32Array(n);
  for (let e = 0; e < n; e++) entries[e] = e;
  entries.sort((a, b) => (entryAt[a] as number) - (entryAt[b] as number));
  /** Whether event e enters window w at all. */
  const enters = (e: number, w: number) => (knownAt[e] as number) <= (eventTime[e] as number) + (lengths[w] as number);
  const exitNext = new Int32Array(W);
  const advanceExit = (w: number, from: number) => {
    let e = from;
    while (e < n && !enters(e, w)) e++;
    exitNext[w] = e;
  };
  for (let w = 0; w < W; w++) advanceExit(w, 0);

  const extremes = plan.outputs.map((o) => (o.fn === 'min' || o.fn === 'max' ? new Extreme(o.fn, n) : undefined));
  // Per window, the extremes that follow it and their inputs.
  const extremesOf = plan.windows.map((_, w) => plan.outputs.flatMap((o, oi) => (o.window === w && extremes[oi] ? [{ extreme: extremes[oi] as Extreme, input: o.input as number }] : [])));
  const alive = Array.from({ length: W }, () => new Uint8Array(n));

  let nextEntry = 0;
  for (;;) {
    // The next instant: the earliest of the next entry and each window's next exit.
    let at = nextEntry < n ? (entryAt[entries[nextEntry] as number] as number) : Infinity;
    for (let w = 0; w < W; w++) {
      const e = exitNext[w] as number;
      if (e < n) at = Math.min(at, (eventTime[e] as number) + (lengths[w] as number));
    }
    if (at === Infinity) return;
    delta.fill(-0);

    for (; nextEntry < n && entryAt[entries[nextEntry] as number] === at; nextEntry++) {
      const e = entries[nextEntry] as number;
      for (let w = 0; w < W; w++) {
        if (!enters(e, w)) continue;
        add(delta, w * stride, e, 1, events, I);
        (alive[w] as Uint8Array)[e] = 1;
        for (const { extreme, input } of extremesOf[w] as Array<{ extreme: Extreme; input: number }>) {
          if ((present[input] as number[])[e] === 1) extreme.push(e, (inputs[input] as number[])[e] as number);
        }
      }
    }
    for (let w = 0; w < W; w++) {
      const length = lengths[w] as number;
      let e = exitNext[w] as number;
      while (e < n && (eventTime[e] as number) + length === at) {
        add(delta, w * stride, e, -1, events, I);
        (alive[w] as Uint8Array)[e] = 0;
        advanceExit(w, e + 1);
        e = exitNext[w] as number;
      }
    }
    for (let c = 0; c < running.length; c++) running[c] = (running[c] as number) + (delta[c] as number);
    if (at < from) continue;

    for (let oi = 0; oi < plan.outputs.length; oi++) {
      const o = plan.outputs[oi] as WindowOutput;
      const base = o.window * stride;
      nulls[oi] = 0;
      const state = base + 1 + INPUT_STATE * (o.input ?? 0);
      if (o.fn === 'count') values[oi] = running[o.input === undefined ? base : state + 1] as number;
      else if (o.fn === 'min' || o.fn === 'max') {
        const top = (extremes[oi] as Extreme).top(alive[o.window] as Uint8Array);
        if (top === null) nulls[oi] = 1;
        else values[oi] = top;
      } else {
        const count = running[state + 1] as number;
        if (count === 0) nulls[oi] = 1;
        else {
          const sum = sumOf(running, state);
          values[oi] = o.fn === 'avg' ? sum / count : sum;
        }
      }
    }
    emit(at, values, nulls);
  }
}

/**
 * Per input, the running state: the sum of its finite values, the count of its present
 * values, and the counts of its NaNs, +Infinities and -Infinities. Those are kept
 * apart so that the sum is right again once they leave: in a plain running sum
 * (Postgres' sum over a window frame) a NaN or infinity poisons every later sum of the
 * entity, as NaN - NaN and ∞ - ∞ are NaN.
 */
const INPUT_STATE = 5;

/** The sum of the values in the window, from an input's state at `at`. */
function sumOf(state: Float64Array, at: number): number {
  const nan = state[at + 2] as number;
  const positive = state[at + 3] as number;
  const negative = state[at + 4] as number;
  if (nan > 0 || (positive > 0 && negative > 0)) return Number.NaN;
  if (positive > 0) return Number.POSITIVE_INFINITY;
  if (negative > 0) return Number.NEGATIVE_INFINITY;
  return state[at] as number;
}

/** Adds `sign` times event e's row count and its inputs' state (present values only: SQL's `x is not null`) to `delta` from `at`. */
function add(delta: Float64Array, at: number, e: number, sign: 1 | -1, events: EntityEvents, count: number): void {
  delta[at] = (delta[at] as number) + sign;
  for (let i = 0; i < count; i++) {
    if ((events.present[i] as number[])[e] === 0) continue;
    const x = (events.inputs[i] as number[])[e] as number;
    const state = at + 1 + INPUT_STATE * i;
    const slot = Number.isFinite(x) ? state : Number.isNaN(x) ? state + 2 : x > 0 ? state + 3 : state + 4;
    delta[slot] = (delta[slot] as number) + (slot === state ? sign * x : sign);
    delta[state + 1] = (delta[state + 1] as number) + sign;
  }
}

/**
 * The least or greatest value of the events in a window: a binary heap of event indices
 * whose events that have left are dropped when they reach the top. Postgres orders NaN
 * above every number (so max is NaN while one is in the window) and ignores nulls.
 */
class Extreme {
  private readonly heap: number[] = [];
  private readonly value: Float64Array;

  constructor(
    private readonly fn: 'min' | 'max',
    events: number,
  ) {
    this.value = new Float64Array(events);
  }

  push(e: number, x: number): void {
    this.value[e] = x;
    const heap = this.heap;
    let i = heap.push(e) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(e, heap[parent] as number)) break;
      heap[i] = heap[parent] as number;
      i = parent;
    }
    heap[i] = e;
  }

  /** The extreme of the events still `alive`, or null when none is. */
  top(alive: Uint8Array): number | null {
    const heap = this.heap;
    while (heap.length > 0 && alive[heap[0] as number] === 0) this.pop();
    return heap.length === 0 ? null : (this.value[heap[0] as number] as number);
  }

  private pop(): void {
    const heap = this.heap;
    const last = heap.pop() as number;
    if (heap.length === 0) return;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= heap.length) break;
      const right = left + 1;
      const child = right < heap.length && this.before(heap[right] as number, heap[left] as number) ? right : left;
      if (!this.before(heap[child] as number, last)) break;
      heap[i] = heap[child] as number;
      i = child;
    }
    heap[i] = last;
  }

  /** Whether event a's value comes before event b's at the top. */
  private before(a: number, b: number): boolean {
    const x = this.value[a] as number;
    const y = this.value[b] as number;
    if (this.fn === 'max') return x > y || (Number.isNaN(x) && !Number.isNaN(y));
    return x < y || (!Number.isNaN(x) && Number.isNaN(y));
  }
}
