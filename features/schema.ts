/**
 * Feature types and the coercion of raw source values into them. Coercion is the
 * only validation done in JavaScript (a value that cannot be typed cannot be
 * COPYed); expectations run in SQL on the staged rows.
 */
import { parseTimestamp, UTC, type TimeZone } from './timestamps.ts';

export const FEATURE_TYPES = ['float', 'int', 'bool', 'string', 'timestamp'] as const;
export type FeatureType = (typeof FEATURE_TYPES)[number];

export type FeatureValue = number | string | boolean | Date | null;
export type FeatureRow = Record<string, FeatureValue>;

/** The Postgres column type each feature type is stored as. */
export const PG_TYPE: Record<FeatureType, string> = {
  float: 'double precision',
  int: 'bigint',
  bool: 'boolean',
  string: 'text',
  timestamp: 'timestamptz',
};

export type Coerced = { ok: true; value: FeatureValue } | { ok: false; reason: string };

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/**
 * Turns a raw value (from Parquet, CSV text, JSON or pg) into a typed feature value. A
 * timestamp text without a zone is a wall-clock time in `timeZone` (never the process's
 * local zone); numbers are epoch milliseconds.
 */
export function coerce(value: unknown, type: FeatureType, timeZone: TimeZone = UTC): Coerced {
  if (value === null || value === undefined || value === '') return { ok: true, value: null };
  switch (type) {
    case 'float': {
      const n = typeof value === 'number' ? value : typeof value === 'bigint' ? Number(value) : typeof value === 'string' ? Number(value.trim()) : Number.NaN;
      return Number.isFinite(n) ? { ok: true, value: n } : fail(value, 'a finite number');
    }
    case 'int': {
      if (typeof value === 'bigint') {
        return value <= BigInt(MAX_SAFE) && value >= -BigInt(MAX_SAFE) ? { ok: true, value: Number(value) } : fail(value, 'an integer within ±2^53');
      }
      const n = typeof value === 'number' ? value : typeof value === 'string' && /^\s*[-+]?\d+\s*$/.test(value) ? Number(value) : Number.NaN;
      return Number.isSafeInteger(n) ? { ok: true, value: n } : fail(value, 'an integer');
    }
    case 'bool': {
      if (typeof value === 'boolean') return { ok: true, value };
      if (value === 1 || value === 0) return { ok: true, value: value === 1 };
      if (typeof value === 'string') {
        const v = value.trim().toLowerCase();
        if (['true', 't', '1', 'yes'].includes(v)) return { ok: true, value: true };
        if (['false', 'f', '0', 'no'].includes(v)) return { ok: true, value: false };
      }
      return fail(value, 'a boolean');
    }
    case 'string':
      if (typeof value === 'string') return { ok: true, value };
      if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return { ok: true, value: String(value) };
      return fail(value, 'a string');
    case 'timestamp': {
      const d = value instanceof Date ? value : typeof value === 'string' ? parseTimestamp(value, timeZone) : typeof value === 'number' ? new Date(value) : undefined;
      return d && Number.isFinite(d.getTime()) ? { ok: true, value: d } : fail(value, 'a timestamp (ISO 8601, such as 2001-01-01T10:00:00Z)');
    }
  }
}

function fail(value: unknown, expected: string): Coerced {
  const shown = typeof value === 'bigint' ? `${value}n` : JSON.stringify(value) ?? String(value);
  return { ok: false, reason: `expected ${expected}, got ${shown.length > 60 ? `${shown.slice(0, 57)}...` : shown}` };
}
