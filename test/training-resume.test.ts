import { WorkflowFailedError } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import project from '../examples/flights/definitions.ts';
import { loadBackend } from '../ml/backend.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { trainingPipeline } from '../workflows/index.ts';
import { progressQuery } from '../core/progress.ts';
import { ingestFlights } from './helpers/flights.ts';
import { spawnWorker, type WorkerProcess } from './helpers/processes.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const window = { start: '2001-01-15T00:00:00.000Z', end: '2001-01-16T12:00:00.000Z' };

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('training survives a GPU worker crash and stops on cancel', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: RunningWorker;
  const gpus: WorkerProcess[] = [];
  let trainingDatasetId: number;

  const startGpu = async () => {
    const gpu = spawnWorker('gpu', { prefix: temporal.prefix, schema: db.schema });
    gpus.push(gpu);
    await gpu.waitFor(/polling task queue/);
    return gpu;
  };
  const epochOf = async (handle: { query: (q: typeof progressQuery) => Promise<{ stage: string; details?: Record<string, unknown> }> }) => {
    const p = await handle.query(progressQuery);
    return p.stage === 'train' && typeof p.details?.epoch === 'number' ? p.details.epoch : undefined;
  };

  beforeAll(async () => {
    db = await createTestDb('resume');
    temporal = await createTestTemporal('resume');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend: await loadBackend('cpu', 'wasm') });
    await ingestFlights(temporal, window);
  });

  afterAll(async () => {
    for (const g of gpus) await g.kill();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('a killed GPU worker is replaced and training resumes from its checkpoint; one version is registered', async () => {
    const first = await startGpu();
    const handle = await temporal.client.workflow.start(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('resume'),
      args: [{ featureView: 'flight_delays', model: 'resumed', params: { hiddenUnits: [16], epochs: 6, batchSize: 256 }, ...window }],
    });
    // The live progress query reports each finished (and checkpointed) epoch.
    const epochAtKill = await until('epoch 2 to finish', async () => {
      const epoch = await epochOf(handle);
      return epoch !== undefined && epoch >= 2 ? epoch : undefined;
    });
    await first.kill(); // a real crash: SIGKILL, mid-epoch
    expect(epochAtKill).toBeLessThan(6);
    await startGpu();

    const result = await handle.result();
    // The retry started from the checkpoint of the last finished epoch, not from 0.
    expect(result.training.resumedFromEpoch).toBeGreaterThanOrEqual(epochAtKill);
    expect(result.training.resumedFromEpoch).toBeLessThan(6);
    expect(result.training.epochs).toBe(6);
    const registry = new ModelRegistry({ knex: db.knex });
    expect((await registry.listModelVersions('resumed')).map((v) => v.version)).toEqual([1]);
    trainingDatasetId = result.trainingDatasetId;
    // The checkpoint is gone once the model is registered.
    expect(await db.knex('training_checkpoints').count({ n: '*' }).first()).toEqual({ n: 0 });
  });

  it('cancelling the workflow stops training at the next heartbeat and registers nothing', async () => {
    const handle = await temporal.client.workflow.start(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('cancel'),
      args: [{ featureView: 'flight_delays', model: 'cancelled', trainingDatasetId, params: { hiddenUnits: [16], epochs: 200, batchSize: 256 } }],
    });
    await until('epoch 1', () => epochOf(handle));
    const cancelledAt = Date.now();
    await handle.cancel();
    const err = await handle.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause).toBeInstanceOf(CancelledFailure);
    // The activity itself stopped (the workflow waits for it): well before 200 epochs.
    expect(Date.now() - cancelledAt).toBeLessThan(15_000);
    const registry = new ModelRegistry({ knex: db.knex });
    await expect(registry.listModelVersions('cancelled')).rejects.toThrow(/not registered/);
    expect(await db.knex('training_checkpoints').count({ n: '*' }).first()).toEqual({ n: 0 });
  });
});
