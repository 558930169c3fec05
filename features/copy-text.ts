/** Postgres COPY text format: tab-separated, `\N` for null, backslash escapes. */
import type { FeatureValue } from './schema.ts';

const NEEDS_ESCAPE = /[\\\t\n\r]/;

export function copyValue(value: FeatureValue): string {
  if (value === null) return '\\N';
  if (typeof value === 'string') return NEEDS_ESCAPE.test(value) ? escape(value) : value;
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (value instanceof Date) return value.toISOString();
  return String(value);
}

function escape(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}
