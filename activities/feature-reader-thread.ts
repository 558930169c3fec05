/**
 * A feature reader's thread (feature-reader.ts): runs the reads the main thread asks
 * for (PredictionStore.featureBatches), over a pool of its own, and posts each batch as soon as
 * the main thread has credit for it, its typed arrays transferred rather than copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ColumnArrays, numberBuffers } from '../core/columns.ts';
import { createKnex } from '../registry/db/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import type { FeatureRead, FeatureReaderReply, FeatureReaderRequest, FeatureReaderSource } from './feature-reader.ts';
import { serializeError } from '../core/threads.ts';

const port = parentPort;
if (!port) throw new Error('feature-reader-thread.ts runs as a worker thread (see feature-reader.ts)');
const source = (workerData as { data: FeatureReaderSource }).data;
// A read holds one connection at a time (the spine's COPY, then each group's).
const knex = createKnex({ url: source.url, schema: source.schema, poolMax: 4, applicationName: 'fti-feature-reader' });
const store = new PredictionStore({ knex });

interface ReadState {
  credit: number;
  cancelled: boolean;
  /** Cancels the read's statement in Postgres. */
  abort: AbortController;
  wake?: () => void;
}
const reads = new Map<number, ReadState>();
const running = new Set<Promise<void>>();

const reply = (message: FeatureReaderReply, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

// The number columns' arrays of the batches the main thread has written, back for the next batches (ColumnArrays).
const arrays = new ColumnArrays();

async function read(job: number, request: FeatureRead, state: ReadState): Promise<void> {
  try {
    for await (const batch of store.featureBatches(request.view, request.snapshot, { ...request, signal: state.abort.signal, arrays })) {
      while (state.credit === 0 && !state.cancelled) await new Promise<void>((resolve) => (state.wake = resolve));
      // Leaving the loop returns the generator, which ends the read.
      if (state.cancelled) return;
      state.credit -= 1;
      // Its number columns' buffers are moved to the main thread, not copied.
      reply({ type: 'batch', job, batch }, numberBuffers(batch));
    }
    if (!state.cancelled) reply({ type: 'end', job });
  } catch (err) {
    if (!state.cancelled) reply({ type: 'error', job, error: serializeError(err) });
  } finally {
    reads.delete(job);
  }
}

function cancel(state: ReadState): void {
  state.cancelled = true;
  state.abort.abort(new Error('the read was cancelled'));
  wake(state);
}

function wake(state: ReadState): void {
  const resolve = state.wake;
  state.wake = undefined;
  resolve?.();
}

port.on('message', (request: FeatureReaderRequest) => {
  if (request.type === 'close') {
    for (const state of reads.values()) cancel(state);
    // The thread ends once its port is closed and its pool's sockets are gone.
    void Promise.all(running)
      .then(() => knex.destroy())
      .finally(() => port.close());
    return;
  }
  if (request.type === 'recycle') {
    const [buffers, rows] = [request.buffers, request.rows];
    for (let i = 0; i + 1 < buffers.length; i += 2) arrays.give(new Float64Array(buffers[i] as ArrayBuffer, 0, rows), new Uint8Array(buffers[i + 1] as ArrayBuffer, 0, rows));
    return;
  }
  if (request.type === 'read') {
    const state: ReadState = { credit: 0, cancelled: false, abort: new AbortController() };
    reads.set(request.job, state);
    const done = read(request.job, request.read, state).finally(() => running.delete(done));
    running.add(done);
    return;
  }
  const state = reads.get(request.job);
  if (!state) return;
  if (request.type === 'credit') {
    state.credit += request.batches;
    wake(state);
  } else cancel(state);
});
