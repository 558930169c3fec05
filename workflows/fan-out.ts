import { CancellationScope, patched } from '@temporalio/workflow';

/** How many partition activities one run keeps in flight by default. */
export const DEFAULT_PARALLELISM = 8;

/**
 * Runs `work` over `items` with at most `limit` in flight, in order. The first failure
 * stops the rest: nothing new starts, the items in flight are cancelled (their
 * activities hear it on their next heartbeat, abort their statements, and are not
 * retried), and the failure is rethrown once every item has settled. Without this a
 * failed partition left its siblings running into the run's abort, which ended their
 * sessions, and Temporal retried them against a failed commit.
 */
export async function fanOut<T>(items: readonly T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  // Histories recorded before bounded fan-out scheduled every item at once and did not
  // cancel on failure; they replay on that path.
  if (!patched('bounded-fan-out')) {
    await Promise.all(items.map(work));
    return;
  }
  const scope = new CancellationScope();
  let failure: { error: unknown } | undefined;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (failure === undefined && next < items.length) {
      const item = items[next++] as T;
      try {
        await scope.run(() => work(item));
      } catch (error) {
        if (failure === undefined) {
          failure = { error };
          scope.cancel();
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (failure !== undefined) throw failure.error;
}
