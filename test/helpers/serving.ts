/**
 * What the prediction-server suites share: a store filled by the real feature
 * pipeline on the flights example, and clients for POST /v1/models/{model}/predict
 * and POST /v1/features/{view}.
 *
 * The store holds the flights of Jan 3 and 4 but airport delays only up to the end
 * of Jan 3, as if Jan 4's flights were tomorrow's schedule: the point-in-time
 * features batch inference gives a Jan 4 flight are then exactly the latest (online)
 * ones.
 */
import type { Knex } from 'knex';
import type { FtiProject } from '../../features/project.ts';
import { loadBackend, type LoadedBackend } from '../../ml/backend.ts';
import type { FeaturesResponse, PredictResponse } from '../../serving/request.ts';
import type { ServerOptions } from '../../serving/server.ts';
import { createKnex } from '../../registry/db/index.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './services.ts';

/** Spine window the suites train on (flights and airport delays both known). */
export const SERVING_HISTORY = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-04T00:00:00.000Z' };
/** Flights online but not yet trained on. */
export const SERVING_TOMORROW = { start: '2001-01-04T00:00:00.000Z', end: '2001-01-05T00:00:00.000Z' };

export interface ServingStore {
  db: TestDb;
  temporal: TestTemporal;
  backend: LoadedBackend;
  /** As the serving role, which `fti serve` connects as: what the servers under test use. */
  serving: { knex: Knex; url: string };
  /** buildServer options for a server on this store, as `fti serve` runs it (serving role), plus `extra`. */
  serverOptions(extra?: Partial<ServerOptions>): ServerOptions;
  cpu: RunningWorker;
  /** Runs a workflow on the suite's CPU queue to completion. */
  execute<A extends unknown[], R>(workflow: (...args: A) => Promise<R>, ...args: A): Promise<R>;
  close(): Promise<void>;
}

/** A schema of the suite's own, a CPU worker for `project`, and the flights store filled by the feature pipeline. */
export async function createServingStore(label: string, project: FtiProject): Promise<ServingStore> {
  const db = await createTestDb(label);
  const temporal = await createTestTemporal(label);
  const backend = await loadBackend('cpu', 'wasm');
  const cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
  const execute = <A extends unknown[], R>(workflow: (...args: A) => Promise<R>, ...args: A) =>
    temporal.client.workflow.execute(workflow, { taskQueue: temporal.cpuQueue, workflowId: uniqueId(workflow.name), args });
  await execute(featurePipeline, { featureGroup: 'flights', start: SERVING_HISTORY.start, end: SERVING_TOMORROW.end });
  await execute(featurePipeline, { featureGroup: 'airport_delays', ...SERVING_HISTORY });
  const servingUrl = db.urlFor('serving');
  const servingKnex = createKnex({ url: servingUrl, schema: db.schema, applicationName: `fti-test-serve-${label}` });
  return {
    db,
    temporal,
    backend,
    serving: { knex: servingKnex, url: servingUrl },
    serverOptions: (extra = {}) => ({ knex: servingKnex, tf: backend.tf, databaseUrl: servingUrl, schema: db.schema, log: () => {}, ...extra }),
    cpu,
    execute,
    close: async () => {
      await servingKnex.destroy();
      await cpu.stop();
      await temporal.close();
      await db.close();
    },
  };
}

export type PredictAnswer = PredictResponse & { error?: string; message?: string; details?: Record<string, unknown> };

export interface PostOptions {
  contentType?: string;
  /** Sent as is instead of JSON.stringify(body). */
  raw?: string;
  /** `Authorization: Bearer <token>`. */
  token?: string;
  headers?: Record<string, string>;
  /** Give up (fail) after this long, so a server that hangs fails the test at once. */
  timeoutMs?: number;
}

/** POST /v1/models/{model}/predict; the answer's status, JSON body and headers. */
export async function postPredict(base: string, model: string, body: unknown, init: PostOptions = {}): Promise<{ status: number; body: PredictAnswer; headers: Headers }> {
  return postJson<PredictAnswer>(`${base}/v1/models/${model}/predict`, body, init);
}

export type FeaturesAnswer = FeaturesResponse & { error?: string; message?: string; details?: Record<string, unknown> };

/** POST /v1/features/{view}; the answer's status, JSON body and headers. */
export async function postFeatures(base: string, view: string, body: unknown, init: PostOptions = {}): Promise<{ status: number; body: FeaturesAnswer; headers: Headers }> {
  return postJson<FeaturesAnswer>(`${base}/v1/features/${view}`, body, init);
}

async function postJson<T>(url: string, body: unknown, init: PostOptions): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': init.contentType ?? 'application/json', ...(init.token ? { authorization: `Bearer ${init.token}` } : {}), ...init.headers },
    body: init.raw ?? JSON.stringify(body),
    ...(init.timeoutMs ? { signal: AbortSignal.timeout(init.timeoutMs) } : {}),
  });
  return { status: response.status, body: (await response.json()) as T, headers: response.headers };
}

/** Polls `fn` until `done` holds, or fails after `timeoutMs` with the last value. */
export async function until<T>(fn: () => Promise<T>, done: (value: T) => boolean, timeoutMs = 5_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await fn();
    if (done(value)) return value;
    if (Date.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms; last value ${JSON.stringify(value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
