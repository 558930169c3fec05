import { getExternalWorkflowHandle, log, type SignalDefinition } from '@temporalio/workflow';

/**
 * Signals another run of the same chain (the parent, or a sibling waiting for this one).
 * Never fails the sender: a run that is gone (the chain was cancelled, or failed) is not
 * listening any more (a parent also learns what it needs from the sender's result).
 * Await it before the sender returns: the server drops the signal of a workflow that
 * closed before sending it.
 */
export async function signalRun<Args extends unknown[]>(target: { workflowId: string; runId?: string }, signal: SignalDefinition<Args>, args: Args, what: string): Promise<void> {
  try {
    await getExternalWorkflowHandle(target.workflowId, target.runId).signal(signal, ...args);
  } catch (err) {
    log.warn(`could not ${what}`, { workflowId: target.workflowId, error: String(err) });
  }
}
