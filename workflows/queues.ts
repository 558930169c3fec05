import { ApplicationFailure, workflowInfo } from '@temporalio/workflow';
import { FailureType } from '../core/errors.ts';
import { queuePrefix, taskQueue } from '../core/task-queues.ts';

/**
 * The task queues of this deployment, derived from the queue the workflow runs on
 * (`<prefix>fti-cpu`), so a prefixed deployment's workflows send GPU work to its own
 * `<prefix>fti-gpu`. A workflow started on any other queue fails at once.
 *
 * The replay harness (test/replay.test.ts) runs histories on a queue of its own; when
 * replaying there, the recorded activity commands carry their queues already, so the
 * default names stand in.
 */
export function poolQueues(): { cpu: string; gpu: string } {
  const info = workflowInfo();
  const prefix = queuePrefix(info.taskQueue);
  if (prefix === undefined) {
    if (info.unsafe.isReplaying) return { cpu: taskQueue('cpu'), gpu: taskQueue('gpu') };
    throw ApplicationFailure.nonRetryable(`workflows run on a task queue named <prefix>fti-cpu; this one runs on ${info.taskQueue}`, FailureType.WrongTaskQueue);
  }
  return { cpu: taskQueue('cpu', prefix), gpu: taskQueue('gpu', prefix) };
}
