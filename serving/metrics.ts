/**
 * Prometheus metrics of the prediction server, in a registry of its own (so several
 * servers in one process, as in tests, never collide). Model labels only ever carry
 * names the registry knows: a request for an unknown model is counted under "".
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
}

export function createServingMetrics(): ServingMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'fti_serve_' });
  return {
    registry,
    requestDuration: new Histogram({
      name: 'fti_predict_request_duration_seconds',
      help: 'Wall time of POST /v1/models/{name}/predict, from request to response',
      labelNames: ['model', 'outcome'],
      // Fine below 10 ms, where the latency target lives.
      buckets: [0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    versionInUse: new Gauge({ name: 'fti_model_version_in_use', help: 'The model version an alias (or a pinned version) is served with', labelNames: ['model', 'alias'], registers: [registry] }),
    predictions: new Counter({ name: 'fti_predictions_total', help: 'Entities scored, by model version', labelNames: ['model', 'version'], registers: [registry] }),
    swaps: new Counter({ name: 'fti_model_swaps_total', help: 'Hot swaps of a served alias to another version', labelNames: ['model', 'alias'], registers: [registry] }),
    swapFailures: new Counter({ name: 'fti_model_swap_failures_total', help: 'Alias moves the server could not follow (it keeps the previous version)', labelNames: ['model', 'alias'], registers: [registry] }),
  };
}
