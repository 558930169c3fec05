/**
 * What the worker's own threads share: how one is started (thread-boot.mjs registers
 * tsx in it, so it runs the TypeScript sources whatever the host process was started
 * with) and how an error crosses back to the activity that asked, with its message and,
 * for an FtiError, its failure type (so the activity fails as it would have on the main
 * thread).
 */
import { Worker } from 'node:worker_threads';
import { FtiError, type FailureType } from '../core/errors.ts';

/** Starts a thread running `entry` (a module's URL); it finds `data` as `workerData.data`. */
export function startThread(entry: URL, data: unknown): Worker {
  return new Worker(new URL('./thread-boot.mjs', import.meta.url), { workerData: { entry: entry.href, data } });
}

export interface SerializedError {
  message: string;
  name: string;
  /** Set for an FtiError: its failure type and details. */
  failureType?: FailureType;
  details?: Record<string, unknown>;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof FtiError) return { message: err.message, name: err.name, failureType: err.type, ...(err.details ? { details: err.details } : {}) };
  if (err instanceof Error) return { message: err.message, name: err.name };
  return { message: String(err), name: 'Error' };
}

export function rebuildError(e: SerializedError): Error {
  if (e.failureType) return new FtiError(e.failureType, e.message, e.details);
  const err = new Error(e.message);
  err.name = e.name;
  return err;
}

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
