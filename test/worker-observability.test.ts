/**
 * Worker observability, through real worker processes: `fti worker cpu --metrics-port 0`
 * (the CLI) and a GPU worker with FTI_WORKER_METRICS_PORT=0 each serve GET /metrics with
 * the Temporal SDK's metrics and ours, and log one JSON object a line, the lines of
 * activities carrying the workflow id, run id, activity type and the versions they work on.
 *
 * One small chain runs through them: the flights group from a file of 600 flights (6 of
 * them without an origin, rejected by its expectations), the airport delays over it,
 * a model trained for two epochs on the GPU worker, and a batch inference run.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { formatLogLine } from '../core/log.ts';
import { batchInference, featurePipeline, trainingPipeline } from '../workflows/index.ts';
import { scratchFiles } from './helpers/files.ts';
import { REPO_ROOT, spawnWorker, type WorkerProcess } from './helpers/processes.ts';
import { createTestDb, createTestTemporal, roleUrl, uniqueId, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('observability');
const window = { start: '2001-01-08T00:00:00.000Z', end: '2001-01-10T00:00:00.000Z' };
const ORIGINS = ['ORD', 'ATL', 'DFW', 'LAX', 'SFO', 'JFK'];
const FLIGHTS = 600;
const WITHOUT_ORIGIN = 6;

/** 600 flights over the window's two days, every 100th without an origin (a failed expectation). */
function flightRows(): object[] {
  return Array.from({ length: FLIGHTS }, (_, i) => {
    const at = new Date(Date.parse(window.start) + Math.floor((i * 2 * 86_400_000) / FLIGHTS));
    return {
      date: at.toISOString().slice(0, 19),
      delay: ((i * 37) % 90) - 20,
      distance: 200 + ((i * 53) % 2000),
      origin: i % 100 === 99 ? null : ORIGINS[i % ORIGINS.length],
      destination: ORIGINS[(i + 1) % ORIGINS.length],
    };
  });
}

/** A real `fti worker …` process; stdout and stderr kept apart (stdout must be all JSON). */
interface CliWorker {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

function startCliWorker(args: string[], env: NodeJS.ProcessEnv): CliWorker {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'cli', 'main.ts'), ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    waitForStdout: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(out);
        if (match) return match;
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`the worker did not print ${pattern} (exit ${child.exitCode}):\n${out.slice(-3000)}\n${err.slice(-3000)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(killer);
    },
  };
}

async function scrape(url: string): Promise<string> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
  return response.text();
}

/** The value of one sample (`name{labels} value`) whose labels include all of `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const found = Object.fromEntries([...(m[3] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) return Number(m[4]);
  }
  return undefined;
}

type LogLine = Record<string, unknown>;

describe('log lines (core/log.ts)', () => {
  const time = new Date('2026-01-02T03:04:05.678Z');
  it('JSON: time, level, component and message first; attributes beside them, never over them; errors with their fields', () => {
    const cause = new Error('socket closed');
    const err = Object.assign(new Error('commit refused', { cause }), { type: 'FtiValidationFailed' });
    const line = formatLogLine({ time, level: 'warn', component: 'activity', message: 'Activity failed', attrs: { message: 'spoof', workflowId: 'wf', n: 10n, error: err } }, 'json');
    const parsed = JSON.parse(line) as LogLine;
    expect(Object.keys(parsed).slice(0, 4)).toEqual(['time', 'level', 'component', 'message']);
    expect(parsed).toMatchObject({ time: time.toISOString(), level: 'warn', component: 'activity', message: 'Activity failed', 'attr.message': 'spoof', workflowId: 'wf', n: '10' });
    expect(parsed.error).toMatchObject({ name: 'Error', message: 'commit refused', type: 'FtiValidationFailed', cause: { message: 'socket closed' } });
    expect(line).not.toContain('\n');
  });

  it('JSON survives a cycle; text stays the human line interactive commands print', () => {
    const loop: Record<string, unknown> = { a: 1 };
    loop.self = loop;
    expect(JSON.parse(formatLogLine({ time, level: 'info', component: 'x', message: 'm', attrs: { loop } }, 'json'))).toMatchObject({ loop: { a: 1, self: '[circular]' } });
    expect(formatLogLine({ time, level: 'info', component: 'dev', message: 'ready', attrs: { schema: 'fti' } }, 'text')).toBe('03:04:05.678 [dev] ready {"schema":"fti"}');
    expect(formatLogLine({ time, level: 'error', component: 'dev', message: 'down' }, 'text')).toBe('03:04:05.678 ERROR [dev] down');
  });
});

describe('worker metrics and structured logs', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let cpu: CliWorker;
  let gpu: WorkerProcess;
  let cpuMetrics: string;

  beforeAll(async () => {
    db = await createTestDb('observe');
    temporal = await createTestTemporal('observe');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      DATABASE_URL: roleUrl(db.schema, 'worker'),
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_NAMESPACE: 'default',
      FTI_SCHEMA: db.schema,
      FTI_TASK_QUEUE_PREFIX: temporal.prefix,
      FTI_DATA_ROOTS: dir,
    };
    // Whatever the caller's shell says: workers log JSON unless told otherwise, and the port comes from the flag.
    delete env.FTI_LOG_FORMAT;
    delete env.FTI_WORKER_METRICS_PORT;
    cpu = startCliWorker(['worker', 'cpu', '--metrics-port', '0'], env);
    gpu = spawnWorker('gpu', { prefix: temporal.prefix, schema: db.schema, extra: { FTI_WORKER_METRICS_PORT: '0', FTI_LOG_FORMAT: 'json' } });
    const [cpuUp] = await Promise.all([cpu.waitForStdout(/"metricsUrl":"([^"]+)"[^\n]*\n/, 170_000), gpu.waitFor(/polling task queue/, 170_000)]);
    cpuMetrics = cpuUp[1] as string;
  });

  afterAll(async () => {
    await cpu?.stop();
    await gpu?.stop();
    await temporal?.close();
    await db?.close();
  });

  let flightsRun: { workflowId: string; runId: string; result: Awaited<ReturnType<typeof featurePipeline>> };

  it('a feature run: /metrics shows its rows read, committed and rejected, stage durations, and the SDK’s metrics', async () => {
    const workflowId = uniqueId('observe-flights');
    const handle = await temporal.client.workflow.start(featurePipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId,
      args: [{ featureGroup: 'flights', ...window, source: { kind: 'ndjson', path: ndjson('flights.ndjson', flightRows()) } }],
    });
    const result = await handle.result();
    flightsRun = { workflowId, runId: handle.firstExecutionRunId, result };
    expect(result.rowsIn).toBe(FLIGHTS);
    expect(result.rowsRejected).toBe(WITHOUT_ORIGIN);
    expect(result.rowsCommitted).toBe(FLIGHTS - WITHOUT_ORIGIN);

    const text = await scrape(cpuMetrics);
    const group = { feature_group: 'flights', version: String(result.version) };
    expect(sample(text, 'fti_feature_rows_read_total', group)).toBe(result.rowsIn);
    expect(sample(text, 'fti_feature_rows_committed_total', group)).toBe(result.rowsCommitted);
    expect(sample(text, 'fti_feature_rows_rejected_total', group)).toBe(result.rowsRejected);
    // One observation per activity of the run, in a histogram by activity type.
    expect(text).toContain('# TYPE fti_activity_duration_seconds histogram');
    for (const activity of ['planFeatureRun', 'ingestPartition', 'commitFeatures']) {
      expect(sample(text, 'fti_activity_duration_seconds_count', { activity, outcome: 'ok' })).toBeGreaterThanOrEqual(1);
      expect(sample(text, 'fti_activity_duration_seconds_bucket', { activity, outcome: 'ok', le: '+Inf' })).toBeGreaterThanOrEqual(1);
    }
    // The Temporal SDK's own metrics, from the same URL: its activity latencies and its workflow tasks.
    expect(sample(text, 'temporal_activity_execution_latency_seconds_count', { activity_type: 'commitFeatures' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'temporal_workflow_completed_total', { workflow_type: 'featurePipeline' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'fti_worker_temporal_metrics_up')).toBe(1);
    // And the process's own.
    expect(sample(text, 'fti_worker_process_resident_memory_bytes')).toBeGreaterThan(0);
  });

  it('the worker’s stdout is one JSON object a line; its activities’ lines carry the workflow id, run id, activity type and versions', async () => {
    // Written after the result came back: wait for the completion line of the commit to be flushed.
    await cpu.waitForStdout(new RegExp(`"activityType":"commitFeatures"[^\\n]*"workflowId":"${flightsRun.workflowId}"|"workflowId":"${flightsRun.workflowId}"[^\\n]*"activityType":"commitFeatures"`), 10_000);
    const lines = cpu.stdout().split('\n').filter((l) => l.trim() !== '');
    expect(lines.length).toBeGreaterThan(3);
    const records = lines.map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        throw new Error(`a stdout line is not JSON: ${line}`);
      }
    });
    for (const r of records) {
      expect(typeof r.time).toBe('string');
      expect(Number.isNaN(Date.parse(r.time as string))).toBe(false);
      expect(['trace', 'debug', 'info', 'warn', 'error']).toContain(r.level);
      expect(typeof r.message).toBe('string');
    }
    expect(records.some((r) => r.component === 'worker:cpu' && /^polling task queue /.test(r.message as string))).toBe(true);

    const ofRun = records.filter((r) => r.workflowId === flightsRun.workflowId && r.workflowRunId === flightsRun.runId);
    const commit = ofRun.find((r) => r.activityType === 'commitFeatures' && r.message === 'activity completed');
    expect(commit).toMatchObject({
      level: 'info',
      component: 'activity',
      workflowType: 'featurePipeline',
      featureGroup: 'flights',
      featureGroupVersion: flightsRun.result.version,
      commitId: flightsRun.result.commitId,
      result: { rowsIn: FLIGHTS, rowsCommitted: FLIGHTS - WITHOUT_ORIGIN, rowsRejected: WITHOUT_ORIGIN },
    });
    expect(typeof commit?.durationMs).toBe('number');
    const ingest = ofRun.find((r) => r.activityType === 'ingestPartition');
    expect(ingest).toMatchObject({ featureGroup: 'flights', commitId: flightsRun.result.commitId, partition: 0 });
  });

  it('training and batch inference: epoch time and samples/s by model on the GPU worker, predictions written by model on the CPU worker', async () => {
    await temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('observe-delays'), args: [{ featureGroup: 'airport_delays', ...window }] });
    const model = 'observed_model';
    const trained = await temporal.client.workflow.execute(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('observe-train'),
      args: [{ featureView: 'flight_delays', model, ...window, params: { hiddenUnits: [4], epochs: 2, batchSize: 128, seed: 3 } }],
    });
    expect(trained.training.epochs).toBe(2);

    const gpuUrl = gpu.metricsUrl();
    expect(gpuUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const gpuText = await scrape(gpuUrl as string);
    expect(sample(gpuText, 'fti_training_epoch_seconds_count', { model })).toBe(2);
    expect(sample(gpuText, 'fti_training_epoch_seconds_sum', { model })).toBeGreaterThan(0);
    expect(sample(gpuText, 'fti_training_samples_per_second', { model })).toBeGreaterThan(0);
    expect(sample(gpuText, 'fti_activity_duration_seconds_count', { activity: 'trainModel', outcome: 'ok' })).toBe(1);
    expect(sample(gpuText, 'temporal_activity_execution_latency_seconds_count', { activity_type: 'trainModel' })).toBe(1);

    const predicted = await temporal.client.workflow.execute(batchInference, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('observe-predict'),
      args: [{ model, version: trained.version, ...window }],
    });
    expect(predicted.rows).toBeGreaterThan(0);
    const cpuText = await scrape(cpuMetrics);
    expect(sample(cpuText, 'fti_batch_predictions_written_total', { model })).toBe(predicted.rows);
    expect(sample(cpuText, 'fti_batch_prediction_rows_rejected_total', { model })).toBe(predicted.rowsRejected);
    // Its partitions' log lines name the model they score with (the line may reach us just after the result).
    const line = await cpu.waitForStdout(/^.*"message":"activity completed".*"activityType":"predictPartition".*$/m, 10_000);
    expect(JSON.parse(line[0]) as LogLine).toMatchObject({ model, modelVersion: trained.version, predictionRun: predicted.runId, result: { rows: expect.any(Number) as unknown } });
  });

  it('a commit refused by validation counts its rows read and rejected, commits none, and its failure is one JSON line', async () => {
    const before = await scrape(cpuMetrics);
    const group = { feature_group: 'flights', version: String(flightsRun.result.version) };
    const count = (text: string, name: string) => sample(text, name, group) ?? 0;
    // A quarter of the rows without an origin: far above the group's 5% quarantine limit.
    const rows = flightRows().slice(0, 40).map((r, i) => (i % 4 === 0 ? { ...r, origin: null } : r));
    const workflowId = uniqueId('observe-refused');
    const failure = await temporal.client.workflow
      .execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId, args: [{ featureGroup: 'flights', ...window, source: { kind: 'ndjson', path: ndjson('refused.ndjson', rows) } }] })
      .then(() => null, (err: unknown) => err);
    expect(failure).toBeInstanceOf(Error);

    const after = await scrape(cpuMetrics);
    expect(count(after, 'fti_feature_rows_read_total') - count(before, 'fti_feature_rows_read_total')).toBe(40);
    expect(count(after, 'fti_feature_rows_rejected_total') - count(before, 'fti_feature_rows_rejected_total')).toBe(10);
    expect(count(after, 'fti_feature_rows_committed_total')).toBe(count(before, 'fti_feature_rows_committed_total'));
    expect(sample(after, 'fti_activity_duration_seconds_count', { activity: 'commitFeatures', outcome: 'failed' })).toBe(1);
    // The SDK's own line about the failed activity, in the same format, with the run's attributes and the error.
    const line = await cpu.waitForStdout(new RegExp(`^.*"message":"Activity failed".*"activityType":"commitFeatures".*"workflowId":"${workflowId}".*$`, 'm'), 10_000);
    const record = JSON.parse(line[0]) as LogLine;
    expect(record).toMatchObject({ level: 'warn', featureGroup: 'flights', error: { type: 'FtiValidationFailed' } });
    expect((record.error as { message: string }).message).toMatch(/10 of 40 rows of flights v\d+ were rejected/);
  });
});
