/**
 * Threads of this process: how one is started (thread-boot.mjs registers tsx in it, so
 * it runs the TypeScript sources whatever the host process was started with) and how an
 * error crosses back to the thread that asked, with its message and, for an FtiError,
 * its failure type (so the work fails as it would have on the main thread).
 */
import { Worker } from 'node:worker_threads';
import { FtiError, type FailureType } from './errors.ts';

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
