/**
 * Domain errors (FtiError: bad input, unknown names, conflicts, failed validation,
 * corrupt artifacts) become non-retryable ApplicationFailures of the same type;
 * anything else is left to Temporal's retry policy.
 */
import { ApplicationFailure } from '@temporalio/common';
import { FtiError } from '../core/errors.ts';

export function toFailure(err: unknown): unknown {
  if (err instanceof FtiError) {
    return ApplicationFailure.create({ message: err.message, type: err.type, nonRetryable: true, details: err.details ? [err.details] : undefined });
  }
  return err;
}

type AsyncFn = (...args: never[]) => Promise<unknown>;

/** Wraps every activity of a factory's result so domain errors are not retried. */
export function withDomainFailures<T extends Record<string, AsyncFn>>(activities: T): T {
  const wrapped: Record<string, AsyncFn> = {};
  for (const [name, fn] of Object.entries(activities)) {
    wrapped[name] = async (...args: never[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        throw toFailure(err);
      }
    };
    // Temporal registers activities by property name; keep function names readable in stack traces too.
    Object.defineProperty(wrapped[name], 'name', { value: name });
  }
  return wrapped as T;
}
