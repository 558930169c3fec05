/**
 * Reading one feature value out of a row, checked against its dtype. Encoding,
 * statistics and request validation all read values through these two functions,
 * so "what counts as a valid float" is decided in exactly one place.
 */
import { invalid, type FtiError } from '../core/errors.ts';
import type { FeatureDtype } from './signature.ts';

/**
 * A row of features as it comes from Postgres or a JSON request. Values are
 * `unknown` on purpose: rows carry other columns too (keys, event time as a Date),
 * and every feature value is checked at run time anyway.
 */
export type FeatureRow = Readonly<Record<string, unknown>>;

/** A feature value that does not fit its dtype. `message` is ready for an API response. */
export function valueProblem(feature: string, problem: string): FtiError {
  return invalid(`${feature}: ${problem}`, { feature });
}

/**
 * The numeric value of a float, int or bool feature; null for SQL NULL.
 * Throws (a valueProblem) for an absent key, a wrong type, NaN or ±Infinity.
 * Strings are rejected even when they look numeric: pg returns int8 and numeric
 * columns as strings, and silently parsing them here would hide that.
 */
export function readNumber(feature: string, dtype: FeatureDtype, value: unknown): number | null {
  if (value === null) return null;
  switch (dtype) {
    case 'float':
      if (typeof value === 'number' && Number.isFinite(value)) return value;
      break;
    case 'int':
      if (typeof value === 'number' && Number.isInteger(value)) return value;
      break;
    case 'bool':
      if (typeof value === 'boolean') return value ? 1 : 0;
      break;
    case 'string':
      throw valueProblem(feature, 'a string feature has no numeric value');
  }
  throw valueProblem(feature, mismatch(dtype, value));
}

/**
 * The category key of a feature value (its string form, so an int weekday 3 is
 * category "3"); null for SQL NULL. Throws like readNumber.
 */
export function readCategory(feature: string, dtype: FeatureDtype, value: unknown): string | null {
  if (value === null) return null;
  if (dtype === 'string') {
    if (typeof value === 'string') return value;
    throw valueProblem(feature, mismatch(dtype, value));
  }
  const n = readNumber(feature, dtype, value);
  return n === null ? null : dtype === 'bool' ? String(value) : String(n);
}

function mismatch(dtype: FeatureDtype, value: unknown): string {
  if (value === undefined) return 'missing (send null for an unknown value)';
  const expected = dtype === 'int' ? 'an int' : `a ${dtype}`;
  // NaN, Infinity and 3.5 (for an int) print as themselves.
  if (typeof value === 'number') return `expected ${expected}, got ${value}`;
  if (typeof value === 'string') return `expected ${expected}, got string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  return `expected ${expected}, got ${Array.isArray(value) ? 'array' : typeof value}`;
}
