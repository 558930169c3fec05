/**
 * The online prediction server (fastify): POST /v1/models/{name}[@ref]/predict,
 * POST /v1/features/{view}[@version] (the feature vectors predictions are made of),
 * GET /healthz, GET /metrics, GET /models/{name}/{version}/report (a version's stored
 * report page). `fti serve` starts it; tests and the bench build it
 * in-process with buildServer and listen on a port of their choosing.
 *
 * A client sends entity keys only. The server looks up the online features of the
 * feature view the served version was trained on, so versions trained on different
 * views can be served side by side, and moving an alias back moves the features
 * back with it.
 *
 * Hardening (all options below, set from the environment by `fti serve`): optional
 * bearer tokens (auth.ts); version numbers load on demand only when they hold or held
 * an alias or are allow-listed (model-resolver.ts); a time budget per request; a body
 * limit. The statement timeout lives on the database pool the caller hands in
 * (`withStatementTimeout` in database.ts).
 *
 * A sample of what is served (`skewLogRate`) is logged for skew checks, off the
 * request path (skew-log.ts).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { Knex } from 'knex';
import { createLogger, type Logger } from '../core/log.ts';
import type { Tf } from '../ml/backend.ts';
import { createKnex, databaseReachable } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { MonitoringStore } from '../registry/monitoring/index.ts';
import { PredictionStore } from '../registry/predictions/index.ts';
import { watchAliases, type AliasWatchTuning } from './alias-watch.ts';
import { bearerAuth, parseServingTokens } from './auth.ts';
import { HttpError, toHttpError } from './http-errors.ts';
import { createServingMetrics, type ServingMetrics } from './metrics.ts';
import { ModelResolver } from './model-resolver.ts';
import { FEATURES_ROUTE, parseModelSegment, PREDICT_ROUTE } from './request.ts';
import { registerReportRoute } from './report-route.ts';
import { registerRoutes, type HealthReport } from './routes.ts';
import { closeLookups, loadServedModel, type LookupCache } from './served-model.ts';
import { DEFAULT_SKEW_LOG_RATE, SkewLog, type SkewLogOptions } from './skew-log.ts';
import { ViewResolver } from './served-view.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The model a prediction request resolved to ('' until then): the metrics label. */
    ftiModel: string;
    /** The feature view a feature-vector request resolved to ('' until then): the metrics label. */
    ftiView: string;
  }
}

export interface ServerOptions {
  knex: Knex;
  /** TensorFlow.js with its backend loaded (ml/backend.ts). */
  tf: Tf;
  /** For LISTEN: alias moves are announced on the database, per schema. */
  databaseUrl: string;
  schema: string;
  registry?: ModelRegistry;
  /** Largest request body in bytes (413 beyond). */
  bodyLimit?: number;
  /** Most entities in one request (400 beyond). */
  maxEntities?: number;
  /**
   * Most model versions kept in memory. Versions a served alias points at are never
   * evicted (and count toward it); versions asked for by number share what is left.
   */
  modelCapacity?: number;
  /** `name`, `name@alias` or `name@3`: loaded before the server is returned, so no request waits for a model load. A preloaded `name@3` is allow-listed. */
  preload?: string[];
  /**
   * Bearer tokens (FTI_SERVING_TOKEN): one, a comma-separated list, or an array. When
   * set, every route but GET /healthz (and GET /metrics when `metricsPublic`) needs
   * `Authorization: Bearer <one of them>`. Unset: no auth.
   */
  tokens?: string | string[];
  /** GET /metrics without a token even when tokens are set (FTI_SERVING_METRICS_PUBLIC). Default false. */
  metricsPublic?: boolean;
  /** `name@N` versions that may be loaded by number although they never held an alias. */
  allowVersions?: string[];
  /** A prediction that takes longer answers 503 request_timeout (default DEFAULT_REQUEST_TIMEOUT_MS). */
  requestTimeoutMs?: number;
  /**
   * The alias listener's keepalive, in milliseconds (alias-watch.ts): a `select 1`
   * every `pingIntervalMs` (5000) answered within `pingTimeoutMs` (5000), reconnects
   * after `retryMs` (500) doubling up to `maxRetryMs` (30000), each connect given
   * `connectTimeoutMs` (10000); deaf — /healthz 503 — when disconnected or after
   * `deafAfterMs` (2 × ping interval + ping timeout) without an answered round trip;
   * every served alias re-resolved after each reconnect and every `recheckMs` (30000).
   */
  aliasWatch?: AliasWatchTuning;
  /**
   * Share of served entities logged for skew checks, 0 to 1 (default DEFAULT_SKEW_LOG_RATE;
   * 0: off). Written off the request path on a connection of its own (skew-log.ts).
   */
  skewLogRate?: number;
  /** The skew log's batching: rows per INSERT, longest wait, most rows queued. */
  skewLogTuning?: Pick<SkewLogOptions, 'batchSize' | 'flushMs' | 'maxQueue' | 'random'>;
  log?: Logger;
}

export const DEFAULT_BODY_LIMIT = 64 * 1024;
export const DEFAULT_MAX_ENTITIES = 256;
export const DEFAULT_REQUEST_TIMEOUT_MS = 5_000;
/** A skew-log INSERT running longer is cancelled (its rows counted as dropped). */
const SKEW_LOG_STATEMENT_TIMEOUT_MS = 10_000;
/** Longest a client may take to send a whole request (headers and body); Node answers 408 beyond. */
export const RECEIVE_TIMEOUT_MS = 30_000;

export interface PredictionServer {
  app: FastifyInstance;
  resolver: ModelResolver;
  metrics: ServingMetrics;
  /** The served log (absent when the rate is 0). */
  skewLog?: SkewLog;
}

export async function buildServer(options: ServerOptions): Promise<PredictionServer> {
  const { knex, tf, log = createLogger('serve') } = options;
  // Bad settings fail here, before anything is opened.
  const tokens = parseServingTokens(options.tokens);
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  if (!Number.isInteger(requestTimeoutMs) || requestTimeoutMs < 1) throw new Error(`requestTimeoutMs must be a positive integer, got ${String(requestTimeoutMs)}`);
  const skewLogRate = options.skewLogRate ?? DEFAULT_SKEW_LOG_RATE;
  if (!(skewLogRate >= 0 && skewLogRate <= 1)) throw new Error(`skewLogRate is a share from 0 to 1, got ${String(skewLogRate)}`);
  for (const segment of options.allowVersions ?? []) {
    if (parseModelSegment(segment).ref.kind !== 'version') throw new Error(`an allowed version is NAME@VERSION (e.g. flight_delay@3), got ${JSON.stringify(segment)}`);
  }
  // A version preloaded by number is allowed too: the operator named it.
  const allowVersions = [...(options.allowVersions ?? []), ...(options.preload ?? [])].flatMap((segment) => {
    const { name, ref } = parseModelSegment(segment);
    return ref.kind === 'version' ? [{ name, version: ref.version }] : [];
  });
  const registry = options.registry ?? new ModelRegistry({ knex });
  const features = new FeatureStore({ knex });
  const predictions = new PredictionStore({ knex });
  const metrics = createServingMetrics();
  const lookups: LookupCache = {
    views: new Map(),
    onBatch: {
      started: (stage, items, calls) => {
        metrics.batchEntities.observe({ stage }, items);
        metrics.batchRequests.observe({ stage }, calls);
      },
      settled: (stage, { waitSeconds, runSeconds }) => {
        metrics.batchWait.observe({ stage }, waitSeconds);
        metrics.batchDuration.observe({ stage }, runSeconds);
      },
    },
  };
  const resolver = new ModelResolver({
    registry,
    load: (name, version) => loadServedModel({ models: registry, views: features, predictions, tf }, lookups, name, version),
    metrics,
    log,
    capacity: options.modelCapacity,
    allowVersions,
  });
  // Shares the lookups with the versions trained on each view.
  const views = new ViewResolver({ views: features, predictions, lookups });
  const watch = await watchAliases({
    ...options.aliasWatch,
    databaseUrl: options.databaseUrl,
    schema: options.schema,
    onChange: (change) => resolver.onAliasChange(change),
    recheck: () => resolver.refreshAll(),
    onListening: (listening) => {
      metrics.aliasListenerUp.set(listening ? 1 : 0);
      if (listening) metrics.aliasListenerReconnects.inc();
    },
    log,
  });
  metrics.aliasListenerUp.set(1);

  const app = Fastify({
    logger: false,
    bodyLimit: options.bodyLimit ?? DEFAULT_BODY_LIMIT,
    // A client that trickles its request in (slowloris) is cut off; the handler has its own budget (requestTimeoutMs).
    requestTimeout: Math.max(RECEIVE_TIMEOUT_MS, requestTimeoutMs),
    // Reject what the schema does not allow instead of stripping or coercing it.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allowUnionTypes: true } },
  });
  // JSON only: anything else is a 415, not a string body that fails the schema.
  app.removeContentTypeParser('text/plain');
  app.decorateRequest('ftiModel', '');
  app.decorateRequest('ftiView', '');
  // First hook of every request: a request without a valid token goes no further (its body is not even read).
  const auth = bearerAuth({ tokens, publicRoutes: ['/healthz', ...(options.metricsPublic ? ['/metrics'] : [])] });
  if (auth) app.addHook('onRequest', auth);
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url;
    if (route !== PREDICT_ROUTE && route !== FEATURES_ROUTE) return;
    const outcome = reply.statusCode < 400 ? 'ok' : reply.statusCode < 500 ? 'client_error' : 'server_error';
    if (route === PREDICT_ROUTE) metrics.requestDuration.observe({ model: request.ftiModel, outcome }, reply.elapsedTime / 1000);
    else metrics.featuresRequestDuration.observe({ view: request.ftiView, outcome }, reply.elapsedTime / 1000);
  });
  app.setErrorHandler(async (err, request, reply) => {
    const http = toHttpError(err);
    if (http.statusCode >= 500) log('request failed', { method: request.method, url: request.url, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    // Timeouts (503) are worth retrying shortly.
    if (http.statusCode === 503) void reply.header('retry-after', '1');
    return reply.code(http.statusCode).send(http.body());
  });
  app.setNotFoundHandler(async (request, reply) => {
    const http = new HttpError(404, 'no_route', `no route ${request.method} ${request.url.split('?')[0]}; predictions are POST /v1/models/{name}[@alias|@version]/predict, feature vectors POST /v1/features/{view}[@version]`);
    return reply.code(404).send(http.body());
  });

  // Down when the database is unreachable, or when the alias listener is deaf: the
  // server may then be answering with a version an alias has left.
  const health = async (): Promise<HealthReport> => {
    const database = (await databaseReachable(knex)) ? 'ok' : 'unreachable';
    const { state: aliasAnnouncements, reason: listenerReason, ...aliasListener } = watch.health();
    metrics.aliasListenerUp.set(aliasAnnouncements === 'listening' ? 1 : 0);
    const reasons = [...(database === 'ok' ? [] : ['database unreachable']), ...(listenerReason ? [listenerReason] : [])];
    return {
      status: reasons.length ? 'down' : 'ok',
      ...(reasons.length ? { reason: reasons.join('; ') } : {}),
      database,
      aliasAnnouncements,
      aliasListener,
      served: resolver.served(),
    };
  };
  // The served log has a connection of its own (and a statement timeout): a slow INSERT never holds a lookup's.
  const skewLogKnex = skewLogRate > 0 ? createKnex({ url: options.databaseUrl, schema: options.schema, poolMax: 1, applicationName: 'fti-serve-skew-log', statementTimeoutMs: SKEW_LOG_STATEMENT_TIMEOUT_MS }) : undefined;
  const servedLog = skewLogKnex ? new MonitoringStore({ knex: skewLogKnex }) : undefined;
  const skewLog = servedLog
    ? new SkewLog({ ...options.skewLogTuning, rate: skewLogRate, write: (rows) => servedLog.logServed(rows), metrics, log })
    : undefined;
  registerRoutes(app, { resolver, views, metrics, maxEntities: options.maxEntities ?? DEFAULT_MAX_ENTITIES, requestTimeoutMs, health, skewLog });
  registerReportRoute(app, registry);

  // The lookups' held connections go back to the pool as closing begins: an onClose hook
  // of the caller's may destroy the pool (which waits for every connection it lent), and
  // onClose hooks run in an order the caller's registration decides. Requests still in
  // flight give theirs back when they finish.
  app.addHook('preClose', async () => {
    await closeLookups(lookups);
  });
  app.addHook('onClose', async () => {
    await watch.close();
    resolver.close();
    // What was sampled is written before the server is gone.
    await skewLog?.close();
    await skewLogKnex?.destroy();
  });
  try {
    for (const segment of options.preload ?? []) {
      const { name, ref } = parseModelSegment(segment);
      (await resolver.acquire(name, ref)).release();
      log('preloaded', { model: segment });
    }
  } catch (err) {
    await app.close();
    throw err;
  }
  return { app, resolver, metrics, skewLog };
}
