import { WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';

/** The ApplicationFailure at the root of a failed workflow (through activity failures). */
export function rootFailure(err: unknown): ApplicationFailure | undefined {
  let cause: unknown = err instanceof WorkflowFailedError ? err.cause : err;
  while (cause instanceof ActivityFailure) cause = cause.cause;
  return cause instanceof ApplicationFailure ? cause : undefined;
}

export async function failureOf(promise: Promise<unknown>): Promise<ApplicationFailure> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (err === undefined) throw new Error('expected the workflow to fail, but it completed');
  const root = rootFailure(err);
  if (!root) throw new Error(`expected an ApplicationFailure, got ${String(err)}`);
  return root;
}
