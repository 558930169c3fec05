import type { Duration, RetryPolicy } from '@temporalio/common';
import { patched, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';

/**
 * Whether this run takes its short steps on the way to a result (plans, describing a
 * dataset, registration, finishing, the clean-up after a success) as local activities:
 * run by the worker that runs the workflow task, inside that task, with no trip through
 * the server's activity queue and no workflow task of their own to hand the result
 * back. Each is a few milliseconds of SQL; as an activity it sat between 10 and 25 ms of
 * scheduling (README, orchestration overhead). The CPU pool hosts the workflows and
 * every one of these steps, so a step still runs where it ran before: on a CPU worker.
 *
 * What stays the same: the retry policy and timeouts (a local activity's retries back
 * off in the worker, then on a timer), and idempotence, which they all had already: a
 * workflow task that fails after its local activity ran runs it again.
 * What changes: the step shows in the history as a marker, not as activity events.
 *
 * What stays an activity: long or heartbeating work (partitions, commits, datasets,
 * training, evaluation, promotion, reports), and every step on the way out of a failure
 * or a cancel (aborts, the clean-up after one). A local activity holds its workflow task
 * open; one that ends the workflow in that task is refused by the server if events came
 * in meanwhile (a partition's failure after a cancel), and the retried task sees the
 * cancel and those events in one activation, in an order that can turn a cancelled run
 * into a failed one. As an activity, the abort ends that workflow task first.
 *
 * patched: histories recorded before ran these steps as activities and replay that way.
 */
function shortStepsRunLocally(): boolean {
  return patched('local-short-steps');
}

/**
 * The proxy of a run's short steps, made once per run inside the workflow function:
 * local activities, or in runs recorded before them activities (on `taskQueue`, if given).
 */
export function shortSteps<A>(options: { startToCloseTimeout: Duration; retry: RetryPolicy; taskQueue?: string }) {
  const { taskQueue: _remoteOnly, ...local } = options;
  return shortStepsRunLocally() ? proxyLocalActivities<A>(local) : proxyActivities<A>(options);
}
