/**
 * Timestamps without a zone ("2001-01-01 10:00" in a CSV, a Parquet TIMESTAMP without
 * isAdjustedToUTC, a Postgres `timestamp`) are wall-clock times: they are read in the
 * zone the definition declares (`timeZone`, UTC by default), never in the worker's
 * local zone, which is what `new Date(text)` would do.
 *
 * A zone is `UTC`, a fixed offset (`+05:30`, `-08:00`) or an IANA name
 * (`America/New_York`, resolved with the Intl tables Node ships). A wall-clock time that
 * a daylight-saving change skips moves forward by the gap; one it repeats takes the
 * earlier instant (as java.time, Luxon and Temporal's 'compatible' do).
 */

export type TimeZone = string;

export const UTC: TimeZone = 'UTC';

const OFFSET = /^([+-])(\d{2}):(\d{2})$/;

/** ISO 8601 date, optionally a time of day, optionally a zone (`Z`, `±hh`, `±hhmm`, `±hh:mm`); `T` or a space between. */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/** Whether `zone` is one `parseTimestamp` understands. */
export function isTimeZone(zone: string): boolean {
  if (zone === UTC) return true;
  if (OFFSET.test(zone)) return offsetMinutes(zone) !== undefined;
  try {
    formatter(zone);
    return true;
  } catch {
    return false;
  }
}

/**
 * Text → instant. A text with a zone (`Z`, an offset) is that instant; one without is a
 * wall-clock time in `zone`. Only ISO 8601 forms are read without a zone; other texts
 * are accepted only when they name their zone (`… GMT`, `… +0100`). Undefined: not a
 * timestamp.
 */
export function parseTimestamp(text: string, zone: TimeZone = UTC): Date | undefined {
  const s = text.trim();
  const m = ISO.exec(s);
  if (m) {
    const [, y, mo, d, h = '0', mi = '0', sec = '0', frac = '', z, sign, oh, om = '00'] = m;
    const ms = frac ? Number(frac.slice(0, 3).padEnd(3, '0')) : 0;
    const wall = wallClock(Number(y), Number(mo), Number(d), Number(h), Number(mi), Number(sec), ms);
    if (wall === undefined) return undefined;
    if (z) return new Date(wall);
    if (sign) {
      const offset = (Number(oh) * 60 + Number(om)) * (sign === '-' ? -1 : 1);
      if (Number(oh) > 23 || Number(om) > 59) return undefined;
      return new Date(wall - offset * 60_000);
    }
    return new Date(wallClockToInstant(wall, zone));
  }
  // Other forms only when they carry their own zone (RFC 2822 and the like).
  if (!/(?:\b(?:GMT|UTC|Z)|[+-]\d{2}:?\d{2})\s*$/i.test(s)) return undefined;
  const t = Date.parse(s);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/**
 * `wallMs`: a wall-clock time encoded as if it were UTC (`Date.UTC(y, m, d, h, …)`, or a
 * zone-less Parquet timestamp as hyparquet decodes it). Returns the instant (epoch ms) at
 * which clocks in `zone` showed it.
 */
export function wallClockToInstant(wallMs: number, zone: TimeZone): number {
  if (zone === UTC) return wallMs;
  const fixed = offsetMinutes(zone);
  if (fixed !== undefined) return wallMs - fixed * 60_000;
  // Luxon's two-step guess: the offset at the wall time read as UTC, then corrected.
  const o1 = zoneOffsetMs(wallMs, zone);
  const guess = wallMs - o1;
  const o2 = zoneOffsetMs(guess, zone);
  if (o1 === o2) return guess;
  const second = wallMs - o2;
  const o3 = zoneOffsetMs(second, zone);
  if (o2 === o3) return second;
  // In a gap: the wall time does not exist; move forward by the gap.
  return wallMs - Math.min(o2, o3);
}

function wallClock(y: number, mo: number, d: number, h: number, mi: number, s: number, ms: number): number | undefined {
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59) return undefined;
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, ms);
  // Reject 2001-02-30 and the like, which Date would roll over.
  if (date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return undefined;
  const t = date.getTime();
  return Number.isFinite(t) ? t : undefined;
}

function offsetMinutes(zone: string): number | undefined {
  const m = OFFSET.exec(zone);
  if (!m) return undefined;
  const [, sign, h, mm] = m;
  if (Number(h) > 23 || Number(mm) > 59) return undefined;
  return (Number(h) * 60 + Number(mm)) * (sign === '-' ? -1 : 1);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    // Throws RangeError for an unknown zone.
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric', era: 'short' });
    formatters.set(zone, f);
  }
  return f;
}

/** The zone's UTC offset (ms) at instant `t`: its wall clock then, minus `t`. */
function zoneOffsetMs(t: number, zone: string): number {
  const whole = Math.floor(t / 1000) * 1000;
  const parts: Record<string, string> = {};
  for (const p of formatter(zone).formatToParts(new Date(whole))) parts[p.type] = p.value;
  const year = parts.era === 'BC' || parts.era === 'B' ? 1 - Number(parts.year) : Number(parts.year);
  const date = new Date(0);
  date.setUTCFullYear(year, Number(parts.month) - 1, Number(parts.day));
  date.setUTCHours(Number(parts.hour) % 24, Number(parts.minute), Number(parts.second), 0);
  return date.getTime() - whole;
}
