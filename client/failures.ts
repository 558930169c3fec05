/**
 * Why a pipeline run did not produce a result, in one line a person can act on:
 * the root ApplicationFailure (its FtiXxx type and message) under the activity and
 * child-workflow failures Temporal wraps it in, or "cancelled" / "terminated" /
 * "timed out".
 */
import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure, TerminatedFailure, TimeoutFailure } from '@temporalio/common';

export type RunFailureKind = 'failed' | 'cancelled' | 'terminated' | 'timed_out';

export interface RunFailure {
  kind: RunFailureKind;
  /** The ApplicationFailure type, e.g. FtiNotFound, when there is one. */
  type?: string;
  message: string;
}

export function describeRunFailure(err: unknown): RunFailure {
  let cause: unknown = err instanceof WorkflowFailedError ? (err.cause ?? err) : err;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  if (cause instanceof CancelledFailure) return { kind: 'cancelled', message: 'the run was cancelled' };
  if (cause instanceof TerminatedFailure) return { kind: 'terminated', message: `the run was terminated${cause.message ? `: ${cause.message}` : ''}` };
  if (cause instanceof TimeoutFailure) return { kind: 'timed_out', message: `the run timed out (${cause.timeoutType})` };
  if (cause instanceof ApplicationFailure) return { kind: 'failed', type: cause.type ?? undefined, message: cause.message };
  return { kind: 'failed', message: cause instanceof Error ? cause.message : String(cause) };
}

/** `FtiNotFound: feature group x is not defined`, or the message alone. */
export function formatRunFailure(failure: RunFailure): string {
  return failure.type ? `${failure.type}: ${failure.message}` : failure.message;
}
