/**
 * The consumer's side of a thread's read (the worker's reader threads); how a thread
 * is started and how its errors cross back live in core/threads.ts.
 */
import { rebuildError, type SerializedError } from '../core/threads.ts';

/**
 * The consumer's side of a thread's read: asks for `ahead` batches, then one more for
 * each taken; ends at the thread's `end`, throws its `error` (rebuilt), and tells the
 * thread to `cancel` when the caller leaves before either.
 */
export async function* creditedBatches<B extends { type: 'batch' }>(
  next: () => Promise<B | { type: 'end' } | { type: 'error'; error: SerializedError }>,
  credit: (batches: number) => void,
  cancel: () => void,
  ahead: number,
): AsyncGenerator<B, void, undefined> {
  credit(ahead);
  let finished = false;
  try {
    for (;;) {
      const reply = await next();
      if (reply.type === 'end') {
        finished = true;
        return;
      }
      if (reply.type === 'error') {
        finished = true;
        throw rebuildError(reply.error);
      }
      credit(1);
      yield reply as B;
    }
  } finally {
    if (!finished) cancel();
  }
}
