/**
 * Prometheus metrics of the prediction server, in a registry of its own (so several
 * servers in one process, as in tests, never collide). Model labels only ever carry
 * names the registry knows: a request for an unknown model is counted under "".
 *
 * The feature route (POST /v1/features/{view}) has series of its own, named for it
 * and labelled by view (a registered one; "" until the view is known), so its lookups
 * never blend into the prediction latencies and counts dashboards already read.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface ServingMetrics {
  registry: Registry;
  /** Wall time of a prediction request, by model and outcome (ok, client_error, server_error). */
  requestDuration: Histogram<'model' | 'outcome'>;
  /** The version each served alias currently answers with. */
  versionInUse: Gauge<'model' | 'alias'>;
  predictions: Counter<'model' | 'version'>;
  swaps: Counter<'model' | 'alias'>;
  swapFailures: Counter<'model' | 'alias'>;
  /** Model versions loaded into memory (a reload after an eviction counts again). */
  modelLoads: Counter<'model' | 'version'>;
  /** Requests for a version by number that the loading rule refused (`reason`: not_allowed). */
  versionRefusals: Counter<'model' | 'reason'>;
  /** Entities of a request with no online row (answered NOT_FOUND in a batch). */
  entitiesNotFound: Counter<'model'>;
  /** Requests that ran out of time: the server's request timeout or the database's statement timeout. */
  timeouts: Counter<'kind'>;
  /** Model versions in memory right now; set by the server from its resolver. */
  modelsLoaded: Gauge;
  /** Wall time of a feature-vector request, by view and outcome (ok, client_error, server_error). */
  featuresRequestDuration: Histogram<'view' | 'outcome'>;
  /** Feature vectors answered, by view and status (OK, NOT_FOUND, INVALID_FEATURES). */
  featureVectors: Counter<'view' | 'status'>;
  /** Feature-vector requests that ran out of time, by kind (request, statement). */
  featureTimeouts: Counter<'kind'>;
  /** 1 while the alias listener hears alias moves, 0 while it is deaf (as /healthz reports it). */
  aliasListenerUp: Gauge;
  /** Times the alias listener reconnected after losing its connection. */
  aliasListenerReconnects: Counter;
  /** Entities per dynamic batch (serving/dynamic-batch.ts), by stage (lookup, score). */
  batchEntities: Histogram<'stage'>;
  /** Requests per dynamic batch, by stage: above 1, concurrent requests shared one query or one model call. */
  batchRequests: Histogram<'stage'>;
  /** How long each batch's oldest request waited for the batch to start, by stage: the batching window, or a batch in flight. */
  batchWait: Histogram<'stage'>;
  /** Wall time of each batch's call, by stage (lookup: the online query; score: the model call). */
  batchDuration: Histogram<'stage'>;
  /** Served rows sampled for the skew log and waiting to be written (serving/skew-log.ts). */
  skewLogQueueDepth: Gauge;
  /** Rows written to the skew log. */
  skewLogRows: Counter;
  /** Sampled rows never written, by reason: queue_full (dropped, never waited for) or write_failed (their INSERT failed). */
  skewLogDropped: Counter<'reason'>;
}

/** Request latency buckets: fine below 10 ms, where the latency target lives. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** A stage of a request (a lookup, a model call, a wait for one) takes from tens of microseconds up. */
const STAGE_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

export function createServingMetrics(): ServingMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fti_serve_' });
  return {
    registry,
    requestDuration: new Histogram({
      name: 'fti_predict_request_duration_seconds',
      help: 'Wall time of POST /v1/models/{name}/predict, from request to response',
      labelNames: ['model', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    versionInUse: new Gauge({ name: 'fti_model_version_in_use', help: 'The model version an alias (or a pinned version) is served with', labelNames: ['model', 'alias'], registers: [registry] }),
    predictions: new Counter({ name: 'fti_predictions_total', help: 'Entities scored, by model version', labelNames: ['model', 'version'], registers: [registry] }),
    swaps: new Counter({ name: 'fti_model_swaps_total', help: 'Hot swaps of a served alias to another version', labelNames: ['model', 'alias'], registers: [registry] }),
    swapFailures: new Counter({ name: 'fti_model_swap_failures_total', help: 'Alias moves the server could not follow (it keeps the previous version)', labelNames: ['model', 'alias'], registers: [registry] }),
    modelLoads: new Counter({ name: 'fti_model_loads_total', help: 'Model versions loaded into memory (a reload after an eviction counts again)', labelNames: ['model', 'version'], registers: [registry] }),
    versionRefusals: new Counter({
      name: 'fti_model_version_refusals_total',
      help: 'Requests for a version by number refused without loading it: it never held an alias and is not allow-listed',
      labelNames: ['model', 'reason'],
      registers: [registry],
    }),
    entitiesNotFound: new Counter({ name: 'fti_entities_not_found_total', help: 'Requested entities with no online features', labelNames: ['model'], registers: [registry] }),
    timeouts: new Counter({ name: 'fti_predict_timeouts_total', help: 'Prediction requests that ran out of time, by kind (request, statement)', labelNames: ['kind'], registers: [registry] }),
    modelsLoaded: new Gauge({ name: 'fti_models_loaded', help: 'Model versions in memory', registers: [registry] }),
    featuresRequestDuration: new Histogram({
      name: 'fti_features_request_duration_seconds',
      help: 'Wall time of POST /v1/features/{view}, from request to response',
      labelNames: ['view', 'outcome'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    }),
    featureVectors: new Counter({ name: 'fti_feature_vectors_total', help: 'Entities answered by POST /v1/features/{view}, by view and status', labelNames: ['view', 'status'], registers: [registry] }),
    featureTimeouts: new Counter({ name: 'fti_features_timeouts_total', help: 'Feature-vector requests that ran out of time, by kind (request, statement)', labelNames: ['kind'], registers: [registry] }),
    aliasListenerUp: new Gauge({ name: 'fti_alias_listener_up', help: '1 while the alias listener hears alias moves (connected, round trips answered), 0 while it is deaf', registers: [registry] }),
    aliasListenerReconnects: new Counter({ name: 'fti_alias_listener_reconnects_total', help: 'Reconnects of the alias listener after it lost its connection', registers: [registry] }),
    batchEntities: new Histogram({ name: 'fti_serve_batch_entities', help: 'Entities per dynamic batch, by stage (lookup: one online query; score: one model call)', labelNames: ['stage'], buckets: BATCH_BUCKETS, registers: [registry] }),
    batchRequests: new Histogram({ name: 'fti_serve_batch_requests', help: 'Requests per dynamic batch, by stage (lookup, score)', labelNames: ['stage'], buckets: BATCH_BUCKETS, registers: [registry] }),
    batchWait: new Histogram({ name: 'fti_serve_batch_wait_seconds', help: "How long a dynamic batch's oldest request waited for it to start, by stage (lookup, score)", labelNames: ['stage'], buckets: STAGE_BUCKETS, registers: [registry] }),
    batchDuration: new Histogram({ name: 'fti_serve_batch_duration_seconds', help: "Wall time of a dynamic batch's call, by stage (lookup: the online query; score: the model call)", labelNames: ['stage'], buckets: STAGE_BUCKETS, registers: [registry] }),
    skewLogQueueDepth: new Gauge({ name: 'fti_serve_skew_log_queue_depth', help: 'Served rows sampled for the skew log, waiting to be written', registers: [registry] }),
    skewLogRows: new Counter({ name: 'fti_serve_skew_log_rows_total', help: 'Served rows written to the skew log', registers: [registry] }),
    skewLogDropped: new Counter({
      name: 'fti_serve_skew_log_dropped_total',
      help: 'Sampled served rows never written to the skew log, by reason (queue_full, write_failed)',
      labelNames: ['reason'],
      registers: [registry],
    }),
  };
}
