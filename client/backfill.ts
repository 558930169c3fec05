/**
 * Backfill arithmetic for windowed schedules. A run fired at time f computes the data
 * window [f - window, f) (workflows/schedule-window.ts). Backfilling the range
 * [from, to) takes one run per fire time in (from, to]: for a schedule whose windows
 * tile time (window = interval, the feature and inference default) those runs
 * recompute exactly the windows of [from, to); for a sliding span (training on the
 * last 30 days, daily) they are the runs "as of" each fire time in the range.
 *
 * Pure functions; times in milliseconds since the epoch.
 */

export interface IntervalSpecMs {
  every: number;
  offset: number;
}

export interface TimeWindow {
  start: Date;
  end: Date;
}

export interface BackfillPlan {
  /** Fire times, oldest first: one run each. */
  fires: Date[];
  /** The data window of each run, in the same order. */
  windows: TimeWindow[];
  /** What to pass to ScheduleHandle.backfill: it takes every fire time in it. */
  temporalRange: TimeWindow;
}

/**
 * The runs of a backfill over [from, to). Both ends must be fire times of the
 * schedule (window boundaries, for tiling windows); a misaligned bound is refused
 * with the nearest aligned times, rather than silently computing a wider or
 * narrower range.
 */
export function planBackfill(spec: IntervalSpecMs, windowMs: number, from: Date, to: Date): BackfillPlan {
  const [start, end] = [from.getTime(), to.getTime()];
  if (!(start < end)) throw new Error(`backfill range is empty: --from ${iso(from)} is not before --to ${iso(to)}`);
  if (!isFireTime(spec, start)) throw misaligned('--from', from, spec);
  if (!isFireTime(spec, end)) throw misaligned('--to', to, spec);
  const firstFire = start + spec.every;
  const lastFire = end;

  const fires: Date[] = [];
  for (let f = firstFire; f <= lastFire; f += spec.every) fires.push(new Date(f));
  return {
    fires,
    windows: fires.map((f) => ({ start: new Date(f.getTime() - windowMs), end: f })),
    // Temporal takes the fire times in [start, end]; older servers treated start as
    // exclusive. One millisecond before the first fire selects it on both (fires are at
    // least a minute apart, so nothing earlier sneaks in).
    temporalRange: { start: new Date(firstFire - 1), end: new Date(lastFire) },
  };
}

/** Interval specs fire at offset + k * every since the epoch (Temporal's alignment). */
export function isFireTime(spec: IntervalSpecMs, t: number): boolean {
  return mod(t - spec.offset, spec.every) === 0;
}

function misaligned(flag: string, value: Date, spec: IntervalSpecMs): Error {
  const t = value.getTime();
  const before = t - mod(t - spec.offset, spec.every);
  const candidates = [before, before + spec.every].map((f) => iso(new Date(f)));
  return new Error(
    `${flag} ${iso(value)} does not line up with the schedule's windows (every ${formatMs(spec.every)}` +
      `${spec.offset ? `, offset ${formatMs(spec.offset)}` : ''}); the nearest are ${candidates.join(' and ')}`,
  );
}

function mod(a: number, b: number): number {
  return ((a % b) + b) % b;
}

/** 3600000 -> `1h`; the largest whole unit among d, h, m, s, else ms. */
export function formatMs(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function iso(d: Date): string {
  return d.toISOString();
}
