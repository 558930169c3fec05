/**
 * No GPU worker polling: a training run fails, after its gpuWaitTimeout, with a
 * message naming the queue nobody polls — it does not wait silently forever. The CPU
 * pool is real and makes the training dataset; the GPU queue simply has no worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType } from '../../core/errors.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { defineFeatureView } from '../../features/views.ts';
import { featurePipeline, trainingPipeline } from '../../workflows/index.ts';
import { scratchFiles } from '../helpers/files.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from '../helpers/services.ts';
import { failureOf } from '../helpers/workflows.ts';

const { dir, ndjson } = scratchFiles('no-gpu');

const events = defineFeatureGroup({
  name: 'events',
  version: 1,
  entityKeys: ['event_id'],
  eventTime: 'at',
  features: { event_id: 'int', at: 'timestamp', x: 'float', hit: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'hit',
});
const view = defineFeatureView({ name: 'hits', version: 1, spine: events, label: 'hit', features: ['events.x'] });
const project = defineProject({ featureGroups: [events], featureViews: [view] });

describe('no GPU worker', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;

  beforeAll(async () => {
    db = await createTestDb('no_gpu');
    temporal = await createTestTemporal('no-gpu');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    const rows = Array.from({ length: 200 }, (_, i) => ({ event_id: i, at: new Date(Date.UTC(2024, 0, 1, 0, i)).toISOString(), x: i % 7, hit: i % 3 === 0 }));
    await temporal.client.workflow.execute(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('fp'),
      args: [{ featureGroup: 'events', source: { kind: 'ndjson', path: ndjson('events.ndjson', rows) } }],
    });
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('fails with the schedule-to-start message naming the GPU queue, not a hang', async () => {
    const started = Date.now();
    const failure = await failureOf(
      temporal.client.workflow.execute(trainingPipeline, {
        taskQueue: temporal.cpuQueue,
        workflowId: uniqueId('train'),
        args: [{ featureView: 'hits', model: 'hits_model', gpuWaitTimeout: '3s', params: { epochs: 1 } }],
      }),
    );
    expect(failure.type).toBe(FailureType.NoWorker);
    expect(failure.message).toContain(`no worker is polling ${taskQueue('gpu', temporal.prefix)}`);
    expect(failure.message).toMatch(/waited 3s/);
    expect(failure.nonRetryable).toBe(true);
    // The dataset (on the CPU pool) and the 3 s wait, not the 6 h start-to-close timeout.
    expect(Date.now() - started).toBeLessThan(60_000);
  });
});
