import { ApplicationFailure, condition, setHandler, workflowInfo } from '@temporalio/workflow';
import { FailureType } from '../core/errors.ts';
import { upstreamCommittedSignal } from '../core/progress.ts';
import { signalRun } from './signal-run.ts';

/*
 * A pipeline started with `awaitUpstream` waits for `upstreamCommitted` once what it reads
 * is committed: the feature groups before it in ftiPipeline. ftiPipeline starts every
 * feature run and the training run at once; each after the first waits for this signal.
 * The commit's activity sends it as soon as the commit is made (CommitInput.tell in
 * activities/feature.ts), and the run's workflow again in the workflow task that sees its
 * commit (for a commit an earlier attempt made, and should the activity's signal be lost). The next stage then
 * starts with no round trip through the chain and no workflow to create (a child
 * start and the new workflow's first task, 30-55 ms a hand-off, README footnote 39), and
 * without waiting for the committing run's own workflow task.
 */

/** Waits for `upstreamCommitted` (a signal that came before this call counts: the SDK keeps it until a handler is set). */
export async function awaitUpstream(): Promise<void> {
  let committed = false;
  setHandler(upstreamCommittedSignal, () => {
    committed = true;
  });
  await condition(() => committed);
}

/**
 * The sibling this run tells of its commit: only a run of the same chain (a child of
 * this run's parent, whose workflow ids extend the parent's), so no input can signal
 * an unrelated workflow.
 */
export function checkDownstream(downstream: string): void {
  const parent = workflowInfo().parent;
  if (!parent || !downstream.startsWith(`${parent.workflowId}/`) || downstream === workflowInfo().workflowId) {
    throw ApplicationFailure.nonRetryable(`downstream must name another child of this run's parent workflow; got ${downstream}`, FailureType.InvalidInput);
  }
}

/** Signals the waiting sibling (signal-run.ts: awaited before this run returns, never a failure). */
export async function tellDownstream(downstream: string): Promise<void> {
  await signalRun({ workflowId: downstream }, upstreamCommittedSignal, [], 'tell the next run of the chain that this commit is made');
}
