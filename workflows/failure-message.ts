import { ActivityFailure, isCancellation } from '@temporalio/workflow';

/** A one-line reason for an aborted run: the activity's own message, or 'cancelled'. */
export function failureMessage(err: unknown): string {
  if (isCancellation(err)) return 'cancelled';
  if (err instanceof ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}
