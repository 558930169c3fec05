import { activityInfo, Context } from '@temporalio/activity';
import type { SignalDefinition } from '@temporalio/common';

/** The id of the workflow that scheduled the running activity (our idempotency key). */
export function workflowIdOfActivity(): string {
  const execution = activityInfo().workflowExecution;
  if (!execution) throw new Error('this activity must be scheduled by a workflow');
  return execution.workflowId;
}

/**
 * Signals a workflow from the running activity, through the worker's client (the
 * activity's counterpart of workflows/signal-run.ts). Best effort: a signal that cannot be
 * sent is logged (`what` says what it was for), never the activity's failure.
 */
export async function signalFromActivity<Args extends unknown[]>(workflowId: string, signal: SignalDefinition<Args>, args: Args, what: string): Promise<void> {
  const context = Context.current();
  try {
    await context.client.workflow.getHandle(workflowId).signal(signal, ...args);
  } catch (err) {
    context.log.warn(`could not ${what}`, { workflowId, error: String(err) });
  }
}
