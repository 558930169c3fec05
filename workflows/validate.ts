import { ApplicationFailure } from '@temporalio/workflow';
import type { z } from 'zod';
import { FailureType, parseWorkflowInput } from '../core/errors.ts';

/** Parses a workflow input, or fails the workflow at once (non-retryable) saying what is wrong. */
export function parseInput<S extends z.ZodType>(workflow: string, schema: S, input: unknown): z.output<S> {
  const parsed = parseWorkflowInput(workflow, schema, input);
  if (!parsed.ok) throw ApplicationFailure.nonRetryable(parsed.problem, FailureType.InvalidInput);
  return parsed.value;
}
