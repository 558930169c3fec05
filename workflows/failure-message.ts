import { ActivityFailure, ApplicationFailure, isCancellation, TimeoutFailure } from '@temporalio/workflow';
import { FailureType } from '../core/errors.ts';

/** A one-line reason for an aborted run: the activity's own message, or 'cancelled'. */
export function failureMessage(err: unknown): string {
  if (isCancellation(err)) return 'cancelled';
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * An activity that no worker picked up within its schedule-to-start timeout becomes a
 * non-retryable failure that names the queue nobody polls (instead of a silent wait);
 * any other error is returned as it is.
 */
export function noWorkerFailure(err: unknown, queue: string, waited: string, hint: string): unknown {
  if (err instanceof ActivityFailure && err.cause instanceof TimeoutFailure && err.cause.timeoutType === 'SCHEDULE_TO_START') {
    return ApplicationFailure.create({ type: FailureType.NoWorker, nonRetryable: true, message: `no worker is polling ${queue}: the activity waited ${waited} without being picked up (${hint})`, cause: err });
  }
  return err;
}
