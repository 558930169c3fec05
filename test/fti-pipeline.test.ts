import { WorkflowFailedError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordHistories, stepsOf } from './helpers/histories.ts';
import { FtiClient } from '../client/fti-client.ts';
import project from '../examples/flights/definitions.ts';
import { loadBackend } from '../ml/backend.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { spawnWorker, type WorkerProcess } from './helpers/processes.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

describe('ftiPipeline: features -> training -> batch inference, linked by versions', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: RunningWorker;
  let gpu: WorkerProcess;
  let client: FtiClient;

  beforeAll(async () => {
    db = await createTestDb('chain');
    temporal = await createTestTemporal('chain');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend: await loadBackend('cpu', 'wasm') });
    gpu = spawnWorker('gpu', { prefix: temporal.prefix, schema: db.schema });
    await gpu.waitFor(/polling task queue/);
    client = FtiClient.fromClient(temporal.client, { taskQueuePrefix: temporal.prefix });
  });

  afterAll(async () => {
    await gpu?.stop();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  it('every link of the result is a real version: prediction run -> model version -> training dataset -> commits', async () => {
    const input = {
      features: { groups: ['flights', 'airport_delays'], start: '2001-01-08T00:00:00Z', end: '2001-01-11T00:00:00Z' },
      training: { featureView: 'flight_delays', model: 'chain_model', start: '2001-01-08T00:00:00Z', end: '2001-01-10T00:00:00Z', params: { hiddenUnits: [8], epochs: 1, batchSize: 1024 } },
      inference: { start: '2001-01-10T00:00:00Z', end: '2001-01-11T00:00:00Z' },
    };
    const run = await client.start('all', input);
    const result = await run.result();
    const store = new FeatureStore({ knex: db.knex });

    // Commits: one per group, visible in the store.
    expect(result.commits.map((c) => c.featureGroup)).toEqual(['flights', 'airport_delays']);
    for (const c of result.commits) {
      const commit = await store.getCommit(c.commitId);
      expect(commit.status).toBe('committed');
      expect(commit.rowsCommitted).toBe(c.rowsCommitted);
    }
    // Training dataset -> the commits it read are exactly the chain's commits.
    const dataset = await new TrainingStore({ knex: db.knex }).dataset(result.lineage.trainingDataset);
    expect(dataset.commits.map((c) => c.commitId).sort()).toEqual(result.commits.map((c) => c.commitId).sort());
    // Model version -> that dataset and those commits.
    const registry = new ModelRegistry({ knex: db.knex });
    const version = await registry.getModelVersion('chain_model', result.lineage.modelVersion.version);
    expect(version.lineage.trainingDatasetId).toBe(dataset.id);
    expect(version.lineage.featureGroupCommits.map((c) => c.commitId).sort()).toEqual(result.commits.map((c) => c.commitId).sort());
    // Prediction run -> that model version, and the same commits for its features.
    const predictions = new PredictionStore({ knex: db.knex });
    const predictionRun = await predictions.run(result.lineage.predictionRun);
    expect(predictionRun).toMatchObject({ model: 'chain_model', version: version.version, status: 'completed' });
    expect(predictionRun.commits.map((c) => c.commitId).sort()).toEqual(result.commits.map((c) => c.commitId).sort());
    // One prediction per flight of the inference day.
    const flights = await store.read(await store.group('flights', 2), { start: new Date(input.inference.start), end: new Date(input.inference.end) }).count();
    expect(result.predictions.rows + result.predictions.rowsRejected).toBe(flights);
    expect(result.predictions.rows).toBeGreaterThan(10_000);
    expect(result.seconds.total).toBeGreaterThan(0);

    // The short steps ran as local activities (workflows/local-steps.ts), each once; the long ones as activities.
    const steps = async (child: string) => {
      const { activities, localActivities } = stepsOf(await temporal.client.workflow.getHandle(`${run.workflowId}/${child}`).fetchHistory());
      return { activities: [...new Set(activities)], localActivities };
    };
    expect(await steps('features:flights')).toEqual({ activities: ['ingestPartition', 'commitFeatures'], localActivities: ['planFeatureRun'] });
    expect(await steps('train:chain_model')).toEqual({ activities: ['createTrainingDataset', 'trainModel', 'evaluateModel', 'writeModelReport'], localActivities: ['registerModel', 'cleanupTraining'] });
    expect(await steps('infer:chain_model')).toEqual({ activities: ['predictPartition'], localActivities: ['planBatchInference', 'finishBatchInference'] });

    // Scoring started once the version was registered, while the training run still wrote its report:
    // the training child announced the version before the report, and the chain started
    // the inference child before the training child had finished.
    const trainHistory = await temporal.client.workflow.getHandle(`${run.workflowId}/train:chain_model`).fetchHistory();
    const trainEvents = trainHistory.events ?? [];
    const announcedAt = trainEvents.findIndex((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName === 'modelRegistered');
    const reportScheduledAt = trainEvents.findIndex((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'writeModelReport');
    expect(announcedAt).toBeGreaterThan(-1);
    expect(announcedAt).toBeLessThan(reportScheduledAt);
    const chainEvents = (await temporal.client.workflow.getHandle(run.workflowId).fetchHistory()).events ?? [];
    const inferenceStartedAt = chainEvents.findIndex((e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowId === `${run.workflowId}/infer:chain_model`);
    const trainingDoneAt = chainEvents.findIndex((e) => e.childWorkflowExecutionCompletedEventAttributes?.workflowExecution?.workflowId === `${run.workflowId}/train:chain_model`);
    expect(inferenceStartedAt).toBeGreaterThan(-1);
    expect(inferenceStartedAt).toBeLessThan(trainingDoneAt);
    expect(result.training.report?.route).toBeDefined();

    // Every feature run and the training run started with the chain, in its first workflow
    // task; each waited for the signal of the run before it, sent once that run's commit was made.
    const childStarts = chainEvents.flatMap((e) => (e.startChildWorkflowExecutionInitiatedEventAttributes ? [{ id: e.startChildWorkflowExecutionInitiatedEventAttributes.workflowId, task: e.startChildWorkflowExecutionInitiatedEventAttributes.workflowTaskCompletedEventId?.toString() }] : []));
    const upFront = [`${run.workflowId}/features:flights`, `${run.workflowId}/features:airport_delays`, `${run.workflowId}/train:chain_model`];
    expect(childStarts.slice(0, 3).map((c) => c.id)).toEqual(upFront);
    expect(new Set(childStarts.slice(0, 3).map((c) => c.task)).size).toBe(1);
    const historyOf = async (child: string) => (await temporal.client.workflow.getHandle(`${run.workflowId}/${child}`).fetchHistory()).events ?? [];
    const toldAt = (events: Awaited<ReturnType<typeof historyOf>>, to: string) => events.findIndex((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName === 'upstreamCommitted' && e.signalExternalWorkflowExecutionInitiatedEventAttributes.workflowExecution?.workflowId === to);
    const heardAt = (events: Awaited<ReturnType<typeof historyOf>>) => events.findIndex((e) => e.workflowExecutionSignaledEventAttributes?.signalName === 'upstreamCommitted');
    const flightsEvents = await historyOf('features:flights');
    const commitScheduled = flightsEvents.find((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'commitFeatures')?.eventId?.toString();
    const commitDoneAt = flightsEvents.findIndex((e) => e.activityTaskCompletedEventAttributes?.scheduledEventId?.toString() === commitScheduled);
    expect(commitDoneAt).toBeGreaterThan(-1);
    expect(toldAt(flightsEvents, `${run.workflowId}/features:airport_delays`)).toBeGreaterThan(commitDoneAt);
    const airportEvents = await historyOf('features:airport_delays');
    const planAt = airportEvents.findIndex((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity');
    expect(heardAt(airportEvents)).toBeGreaterThan(-1);
    expect(heardAt(airportEvents)).toBeLessThan(planAt);
    expect(toldAt(airportEvents, `${run.workflowId}/train:chain_model`)).toBeGreaterThan(planAt);
    expect(heardAt(trainEvents)).toBeGreaterThan(-1);
    expect(heardAt(trainEvents)).toBeLessThan(trainEvents.findIndex((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'createTrainingDataset'));
    // The first telling came from the commit's activity itself, as soon as the commit was made
    // (a client's signal: no sending workflow); the committing run's workflow told it again after.
    const tellers = (events: Awaited<ReturnType<typeof historyOf>>) =>
      events.flatMap((e) => (e.workflowExecutionSignaledEventAttributes?.signalName === 'upstreamCommitted' ? [e.workflowExecutionSignaledEventAttributes.externalWorkflowExecution?.workflowId ?? 'activity'] : []));
    expect(tellers(airportEvents)).toEqual(['activity', `${run.workflowId}/features:flights`]);
    expect(tellers(trainEvents)).toEqual(['activity', `${run.workflowId}/features:airport_delays`]);
    // The airport delays were aggregated from the chain's own flights commit.
    expect(result.commits[1]?.sourceCommits.map((c) => c.commitId)).toEqual([result.commits[0]?.commitId]);

    // FTI_RECORD_HISTORIES=<folder> records the histories the replay test checks workflow code against (test/helpers/histories.ts).
    const recordInto = process.env.FTI_RECORD_HISTORIES;
    if (recordInto) await recordHistories(temporal, run.workflowId, recordInto);

    // A second start of the same chain attaches to it instead of running it twice.
    const again = await client.start('all', input);
    expect(again.existing).toBe(true);
    expect(again.workflowId).toBe(run.workflowId);
    expect((await again.result()).lineage).toEqual(result.lineage);
  });

  it('a feature run that fails: the chain fails with its reason, and the runs waiting for it end CANCELLED having computed nothing', async () => {
    const input = {
      features: { groups: ['no_such_group', 'airport_delays'], start: '2001-01-08T00:00:00Z', end: '2001-01-09T00:00:00Z' },
      training: { featureView: 'flight_delays', model: 'chain_failed', start: '2001-01-08T00:00:00Z', end: '2001-01-09T00:00:00Z', params: { hiddenUnits: [4], epochs: 1 } },
      inference: { start: '2001-01-08T00:00:00Z', end: '2001-01-09T00:00:00Z' },
    };
    const run = await client.start('all', input);
    const failure = await run.result().then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect(String(((failure as WorkflowFailedError).cause?.cause as Error | undefined)?.message)).toMatch(/unknown feature group "no_such_group"/);
    const children: Record<string, string> = {};
    for await (const execution of temporal.client.workflow.list({ query: `WorkflowId STARTS_WITH "${run.workflowId}/"` })) {
      children[execution.workflowId.slice(run.workflowId.length + 1)] = (await temporal.client.workflow.getHandle(execution.workflowId).describe()).status.name;
    }
    expect(children).toEqual({ 'features:no_such_group': 'FAILED', 'features:airport_delays': 'CANCELLED', 'train:chain_failed': 'CANCELLED' });
    const rows = async (query: string) => ((await db.knex.raw(query, [`${run.workflowId}/%`])) as { rows: Array<{ n: number }> }).rows[0]?.n;
    expect(await rows(`select count(*)::int as n from feature_commits where workflow_id like ?`)).toBe(0);
    expect(await rows(`select count(*)::int as n from training_datasets where workflow_id like ?`)).toBe(0);
  });
});
