/**
 * The server's routes: prediction, health and metrics.
 *
 * A prediction: resolve name@ref to a loaded version (no database round trip once
 * served) -> check the keys against the version's spine -> one query for the online
 * features of every entity (spine row + joined groups) -> the signature check and
 * encoding training used -> one forward pass -> scores with the version that made them.
 */
import type { FastifyInstance } from 'fastify';
import { FailureType, FtiError } from '../core/errors.ts';
import type { FeatureRow } from '../ml/values.ts';
import type { ParsedRef } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';
import type { Lease } from '../ml/lease-cache.ts';
import type { ServingMetrics } from './metrics.ts';
import type { ModelResolver, ServedAlias } from './model-resolver.ts';
import { parseModelSegment, predictSchema, PREDICT_ROUTE, type PredictBody, type PredictResponse } from './request.ts';
import type { EntityKeys, ServedModel } from './served-model.ts';

export interface HealthReport {
  status: 'ok' | 'degraded' | 'down';
  database: 'ok' | 'unreachable';
  aliasAnnouncements: 'listening' | 'reconnecting';
  served: ServedAlias[];
}

export interface RouteDeps {
  resolver: ModelResolver;
  metrics: ServingMetrics;
  maxEntities: number;
  health: () => Promise<HealthReport>;
}

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { resolver, metrics } = deps;

  app.post<{ Params: { model: string }; Body: PredictBody }>(PREDICT_ROUTE, { schema: predictSchema(deps.maxEntities) }, async (request): Promise<PredictResponse> => {
    const { name, ref, label } = parseModelSegment(request.params.model);
    const lease = await acquire(resolver, name, ref);
    request.ftiModel = name;
    try {
      const served = lease.value;
      const entities = Array.isArray(request.body.keys) ? request.body.keys : [request.body.keys];
      const keys = served.parseKeys(entities);
      const rows = await served.lookup.lookup(keys);
      const found = checkFound(served, keys, rows);
      const scored = await served.scoring.scoreRows(found);
      checkFeatures(served, keys, found, scored.rejected);
      const scores = scored.scores;
      const { model, version, view } = served.scoring;
      metrics.predictions.inc({ model, version: String(version) }, keys.length);
      return {
        model,
        version,
        ref: label,
        featureView: { name: view.name, version: view.version },
        predictions: keys.map((k, i) => ({ keys: k, score: scores[i] as number })),
      };
    } finally {
      lease.release();
    }
  });

  app.get('/healthz', async (_request, reply) => {
    const report = await deps.health();
    return reply.code(report.status === 'down' ? 503 : 200).send(report);
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}

/** The version for name@ref, with registry errors turned into the right 4xx. */
async function acquire(resolver: ModelResolver, name: string, ref: ParsedRef): Promise<Lease<ServedModel>> {
  try {
    return await resolver.acquire(name, ref);
  } catch (err) {
    if (!(err instanceof FtiError)) throw err;
    switch (err.type) {
      case FailureType.NotFound: {
        // The registry names the model it could not resolve (and says what exists instead);
        // anything else missing (the version's feature view, a feature group) is the server's problem.
        if (err.details?.model !== name) throw new HttpError(409, 'model_not_servable', err.message);
        const code = err.details.ref === undefined ? 'unknown_model' : ref.kind === 'alias' ? 'unknown_alias' : 'unknown_version';
        throw new HttpError(404, code, err.message);
      }
      case FailureType.InvalidInput:
      case FailureType.Conflict:
        throw new HttpError(409, 'model_not_servable', err.message);
      default:
        throw new HttpError(500, 'model_unavailable', err.message);
    }
  }
}

/** 404 naming every entity the spine has no online row for: no prediction is made on nulls. */
function checkFound(served: ServedModel, keys: EntityKeys[], rows: Array<Record<string, unknown> | undefined>): FeatureRow[] {
  const missing = keys.filter((_, i) => rows[i] === undefined);
  if (missing.length) {
    const { view } = served.scoring;
    const shown = missing.slice(0, 5).map((k) => JSON.stringify(k));
    throw new HttpError(
      404,
      'unknown_entity',
      `no online features for ${shown.join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''} in feature group ${view.spine.group} v${view.spine.version} (the spine of feature view ${view.name} v${view.version})`,
      { unknown: missing.slice(0, 100) },
    );
  }
  return rows as FeatureRow[];
}

/** The signature check batch inference applies: stored values that fail it are not scored. */
function checkFeatures(served: ServedModel, keys: EntityKeys[], rows: FeatureRow[], rejected: Array<{ row: FeatureRow; reasons: string[] }>): void {
  const first = rejected[0];
  if (!first) return;
  const { model, version } = served.scoring;
  const entity = keys[rows.indexOf(first.row)];
  throw new HttpError(422, 'invalid_features', `the stored features of ${JSON.stringify(entity)} do not fit the signature of ${model} v${version}: ${first.reasons.join('; ')}`, {
    keys: entity,
    problems: first.reasons,
    rejected: rejected.length,
  });
}
