/**
 * The split reader's thread (split-reader.ts): reads the passes the main thread asks
 * for with splitBatches, over a pool of its own, and posts each batch as soon as the
 * main thread has credit for it, its arrays transferred rather than copied.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createEncoder } from '../ml/encoding.ts';
import { EpochCache } from '../ml/epoch-cache.ts';
import { createKnex } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { TrainingStore, type Split } from '../registry/training/index.ts';
import type { ReaderReply, ReaderRequest, SplitReaderSource } from './split-reader.ts';
import { serializeError } from '../core/threads.ts';
import { datasetAndView, splitBatches } from './training-run.ts';

const port = parentPort;
if (!port) throw new Error('split-reader-thread.ts runs as a worker thread (see split-reader.ts)');
const source = (workerData as { data: SplitReaderSource }).data;
const knex = createKnex({ url: source.url, schema: source.schema, poolMax: 2, applicationName: 'fti-split-reader' });
const training = new TrainingStore({ knex });
const loaded = datasetAndView({ features: new FeatureStore({ knex }), training }, source.trainingDatasetId);
// Awaited by each pass; a failure (no such dataset) is reported there, not as an unhandled rejection.
loaded.catch(() => undefined);
const encoder = createEncoder(source.signature);
// The run's kept splits live as long as the thread: one run, its epochs one after another.
const cache = new EpochCache<Split>(source.epochCacheBytes);

/** A pass: its credit (batches the main thread will take) and whether it was cancelled. */
interface PassState {
  pass: number;
  credit: number;
  cancelled: boolean;
  wake?: () => void;
}
/** The latest pass asked for (it may still wait for the one before to close). */
let current: PassState | undefined;

const reply = (message: ReaderReply, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer);

async function read(request: Extract<ReaderRequest, { type: 'pass' }>, state: PassState): Promise<void> {
  if (state.cancelled) return;
  try {
    const { dataset, view } = await loaded;
    if (state.cancelled) return;
    const pass = splitBatches(training, dataset, view, request.split, encoder, source.batchSize, request.shuffle, cache)(request.epoch);
    for await (const batch of pass) {
      while (state.credit === 0 && !state.cancelled) await new Promise<void>((resolve) => (state.wake = resolve));
      // Leaving the loop returns the generator, which closes the split's cursors.
      if (state.cancelled) return;
      state.credit -= 1;
      reply({ type: 'batch', pass: state.pass, x: batch.x, y: batch.y, size: batch.size }, [batch.x.buffer as ArrayBuffer, batch.y.buffer as ArrayBuffer]);
    }
    if (!state.cancelled) reply({ type: 'end', pass: state.pass });
  } catch (err) {
    if (!state.cancelled) reply({ type: 'error', pass: state.pass, error: serializeError(err) });
  }
}

// Passes run one after another: the next starts once the one before has closed its cursors.
let reading: Promise<void> = Promise.resolve();
port.on('message', (request: ReaderRequest) => {
  if (request.type === 'close') {
    if (current) wake(current, true);
    // The thread ends once its port is closed and its pool's sockets are gone.
    void reading.then(() => knex.destroy()).finally(() => port.close());
    return;
  }
  if (request.type === 'pass') {
    if (current) wake(current, true);
    const state: PassState = { pass: request.pass, credit: 0, cancelled: false };
    current = state;
    reading = reading.then(() => read(request, state));
    return;
  }
  if (!current || current.pass !== request.pass) return;
  if (request.type === 'credit') current.credit += request.batches;
  wake(current, request.type === 'cancel');
});

function wake(state: PassState, cancel: boolean): void {
  if (cancel) state.cancelled = true;
  const resolve = state.wake;
  state.wake = undefined;
  resolve?.();
}
