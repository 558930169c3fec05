/**
 * Errors from ml/ that retrying cannot fix (bad params, malformed rows or batches, a
 * signature that does not fit its model) are FtiError InvalidInput, so the activity
 * layer fails them as non-retryable. Plain Errors are left for transient trouble.
 */
import type { z } from 'zod';
import { FailureType, FtiError } from '../core/errors.ts';

export function invalid(message: string, details?: Record<string, unknown>): FtiError {
  return new FtiError(FailureType.InvalidInput, message, details);
}

/** schema.parse, failing with one readable line per issue. */
export function parseOrThrow<S extends z.ZodType>(schema: S, value: unknown, what: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalid(`invalid ${what}: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
}
