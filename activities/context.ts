import { activityInfo } from '@temporalio/activity';

/** The id of the workflow that scheduled the running activity (our idempotency key). */
export function workflowIdOfActivity(): string {
  const execution = activityInfo().workflowExecution;
  if (!execution) throw new Error('this activity must be scheduled by a workflow');
  return execution.workflowId;
}
