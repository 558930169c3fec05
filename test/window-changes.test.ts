/**
 * The change points of windowed aggregates (registry/feature-store/window-changes.ts)
 * against their definition, evaluated directly at every change point: the events in a
 * window just after instant c are those that entered by c (their event time, or one
 * microsecond before they became known when that was later) and have not left (c <
 * event time + window), among those known before leaving. Events tie in time, come
 * known early, late and too late for a window; inputs are null or NaN now and then.
 * (test/exact-windows.test.ts runs the same code through the pipeline and the joins.)
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../core/random.ts';
import { entityChangePoints, type EntityEvents, type WindowOutput, type WindowPlan } from '../registry/feature-store/index.ts';

const S = 1_000_000;
const WINDOWS = [10 * S, 60 * S];
const OUTPUTS: WindowOutput[] = WINDOWS.flatMap((_, window) => [
  { fn: 'count', window },
  { fn: 'count', window, input: 0 },
  { fn: 'avg', window, input: 0 },
  { fn: 'sum', window, input: 1 },
  { fn: 'min', window, input: 0 },
  { fn: 'max', window, input: 0 },
  { fn: 'max', window, input: 1 },
]);

function makeEvents(seed: number, n: number): EntityEvents {
  const next = mulberry32(seed);
  const events: EntityEvents = { eventTime: [], knownAt: [], inputs: [[], []], present: [[], []] };
  const times = Array.from({ length: n }, () => 1_000 * S + Math.floor(next() * 150) * S).sort((a, b) => a - b);
  for (const te of times) {
    const r = next();
    // Known at once, before the event, a little after, or after it left every window.
    const lag = r < 0.3 ? 0 : r < 0.4 ? -3 * S : r < 0.9 ? Math.floor(next() * 40) * S + 1 : 70 * S;
    events.eventTime.push(te);
    events.knownAt.push(te + lag);
    for (let i = 0; i < 2; i++) {
      const v = next();
      const x = v < 0.1 ? null : v < 0.13 ? Number.NaN : Math.floor(next() * 25) - 5;
      (events.inputs[i] as number[]).push(x ?? 0);
      (events.present[i] as number[]).push(x === null ? 0 : 1);
    }
  }
  return events;
}

/** The outputs at instant c, from the definition. */
function expected(events: EntityEvents, c: number): Array<number | null> {
  return OUTPUTS.map((o) => {
    const length = WINDOWS[o.window] as number;
    const inWindow = events.eventTime.flatMap((te, e) => {
      const ta = events.knownAt[e] as number;
      const entry = ta > te ? ta - 1 : te;
      return ta <= te + length && entry <= c && c < te + length ? [e] : [];
    });
    if (o.fn === 'count' && o.input === undefined) return inWindow.length;
    const xs = inWindow.filter((e) => (events.present[o.input as number] as number[])[e] === 1).map((e) => (events.inputs[o.input as number] as number[])[e] as number);
    if (o.fn === 'count') return xs.length;
    if (xs.length === 0) return null;
    const sum = xs.reduce((a, x) => a + x, 0);
    if (o.fn === 'sum') return sum;
    if (o.fn === 'avg') return sum / xs.length;
    // Postgres orders NaN above every number.
    const numbers = xs.filter((x) => !Number.isNaN(x));
    if (o.fn === 'max') return numbers.length < xs.length ? Number.NaN : Math.max(...numbers);
    return numbers.length === 0 ? Number.NaN : Math.min(...numbers);
  });
}

/** Every instant an event enters at, or leaves a window it entered at. */
function instants(events: EntityEvents): number[] {
  const all = new Set<number>();
  events.eventTime.forEach((te, e) => {
    const ta = events.knownAt[e] as number;
    all.add(ta > te ? ta - 1 : te);
    for (const length of WINDOWS) if (ta <= te + length) all.add(te + length);
  });
  return [...all].sort((a, b) => a - b);
}

function run(events: EntityEvents, from: number): Array<{ at: number; values: Array<number | null> }> {
  const plan: WindowPlan = { windows: WINDOWS, inputs: 2, outputs: OUTPUTS };
  const points: Array<{ at: number; values: Array<number | null> }> = [];
  entityChangePoints(events, plan, from, (at, values, nulls) => points.push({ at, values: Array.from(values, (v, o) => (nulls[o] === 1 ? null : v)) }));
  return points;
}

describe('window change points', () => {
  it('gives, at every instant an event enters or leaves a window, the windows as defined', () => {
    for (const seed of [1, 2, 3]) {
      const events = makeEvents(seed, 400);
      const points = run(events, -Infinity);
      expect(points.map((p) => p.at)).toEqual(instants(events));
      for (const p of points) expect(p.values, `seed ${seed}, instant ${p.at}`).toEqual(expected(events, p.at));
      // The data holds what the test means to cover.
      expect(points.some((p) => p.values.some((v) => Number.isNaN(v)))).toBe(true);
      expect(points.some((p) => p.values[4] === null)).toBe(true);
    }
  });

  it('writes only the instants from `from` on, each still counting the events before it', () => {
    const events = makeEvents(7, 300);
    const all = run(events, -Infinity);
    const from = (all[Math.floor(all.length / 2)] as { at: number }).at;
    expect(run(events, from)).toEqual(all.filter((p) => p.at >= from));
  });

  it('gives no change point for no events', () => {
    expect(run({ eventTime: [], knownAt: [], inputs: [[], []], present: [[], []] }, -Infinity)).toEqual([]);
  });
});
