import { ApplicationFailure } from '@temporalio/workflow';
import type { z } from 'zod';
import { FailureType } from '../core/errors.ts';
import { describeIssues } from '../core/inputs.ts';

/** Parses a workflow input, or fails the workflow at once (non-retryable) saying what is wrong. */
export function parseInput<S extends z.ZodType>(workflow: string, schema: S, input: unknown): z.output<S> {
  const parsed = schema.safeParse(input ?? {});
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid ${workflow} input: ${describeIssues(parsed.error)}`, FailureType.InvalidInput);
  }
  return parsed.data;
}
