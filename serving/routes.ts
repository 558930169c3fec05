/**
 * The server's routes: prediction, health and metrics.
 *
 * A prediction: resolve name@ref to a loaded version (no database round trip once
 * served) -> check the keys against the version's spine -> one query for the online
 * features of every entity (spine row + joined groups) -> the signature check and
 * encoding training used -> one forward pass -> scores with the version that made them.
 *
 * In a batch, an entity without online features (or whose stored features do not fit
 * the signature) is answered with its status and `score: null`; the others are scored
 * as if asked alone. A request that runs past `requestTimeoutMs` answers 503
 * request_timeout (what it was doing finishes in the background and frees its model
 * lease); a lookup Postgres cancels at the pool's statement timeout answers 503
 * statement_timeout.
 */
import type { FastifyInstance } from 'fastify';
import { FailureType, FtiError } from '../core/errors.ts';
import { pgErrorCode } from '../registry/db/index.ts';
import type { FeatureRow } from '../ml/values.ts';
import type { ParsedRef } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';
import type { Lease } from '../ml/lease-cache.ts';
import type { ServingMetrics } from './metrics.ts';
import { VersionNotAllowedError, type ModelResolver, type ServedAlias } from './model-resolver.ts';
import { parseModelSegment, predictSchema, PREDICT_ROUTE, type PredictBody, type Prediction, type PredictResponse } from './request.ts';
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
  /** A prediction request answers 503 request_timeout after this long. */
  requestTimeoutMs: number;
  health: () => Promise<HealthReport>;
}

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { resolver, metrics } = deps;

  app.post<{ Params: { model: string }; Body: PredictBody }>(PREDICT_ROUTE, { schema: predictSchema(deps.maxEntities) }, async (request): Promise<PredictResponse> => {
    const { name, ref, label } = parseModelSegment(request.params.model);
    const deadline = new Deadline(deps.requestTimeoutMs);
    try {
      return await deadline.race(async () => {
        const lease = await acquire(resolver, name, ref);
        try {
          request.ftiModel = name;
          // Timed out while the model loaded: the load is cached for the next request; stop here.
          deadline.check();
          const served = lease.value;
          const batch = Array.isArray(request.body.keys);
          const entities = Array.isArray(request.body.keys) ? request.body.keys : [request.body.keys];
          const keys = served.parseKeys(entities);
          const rows = await served.lookup.lookup(keys);
          deadline.check();
          const predictions = await predict(served, keys, rows, batch);
          const { model, version, view } = served.scoring;
          const scored = predictions.filter((p) => p.status === 'OK').length;
          if (scored) metrics.predictions.inc({ model, version: String(version) }, scored);
          const notFound = predictions.filter((p) => p.status === 'NOT_FOUND').length;
          if (notFound) metrics.entitiesNotFound.inc({ model }, notFound);
          return { model, version, ref: label, featureView: { name: view.name, version: view.version }, predictions };
        } finally {
          lease.release();
        }
      });
    } catch (err) {
      if (err instanceof TimedOut) {
        metrics.timeouts.inc({ kind: 'request' });
        throw new HttpError(503, 'request_timeout', `the prediction took longer than the server's request timeout of ${deps.requestTimeoutMs} ms; try again`, { timeoutMs: deps.requestTimeoutMs });
      }
      if (isStatementTimeout(err)) {
        metrics.timeouts.inc({ kind: 'statement' });
        throw new HttpError(503, 'statement_timeout', "a database statement of this request ran past the server's statement timeout and was cancelled; try again");
      }
      throw err;
    }
  });

  app.get('/healthz', async (_request, reply) => {
    const report = await deps.health();
    return reply.code(report.status === 'down' ? 503 : 200).send(report);
  });

  app.get('/metrics', async (_request, reply) => {
    metrics.modelsLoaded.set(resolver.loaded().length);
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
}

/** The version for name@ref, with registry errors turned into the right 4xx. */
async function acquire(resolver: ModelResolver, name: string, ref: ParsedRef): Promise<Lease<ServedModel>> {
  try {
    return await resolver.acquire(name, ref);
  } catch (err) {
    if (err instanceof VersionNotAllowedError) throw new HttpError(403, 'version_not_allowed', err.message, { model: err.model, version: err.version });
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

/**
 * One prediction per entity, in request order. Entities with no online row, or whose
 * stored features fail the signature check batch inference applies, are never scored:
 * in a batch they are marked; a single entity is a 404 or 422 instead.
 */
async function predict(served: ServedModel, keys: EntityKeys[], rows: Array<Record<string, unknown> | undefined>, batch: boolean): Promise<Prediction[]> {
  if (!batch) checkFound(served, keys, rows);
  const found = rows.filter((r): r is FeatureRow => r !== undefined);
  const scored = await served.scoring.scoreRows(found);
  if (!batch) checkFeatures(served, keys, found, scored.rejected);
  const scores = new Map<FeatureRow, number>(scored.rows.map((row, i) => [row, scored.scores[i] as number]));
  const problems = new Map(scored.rejected.map((r) => [r.row, r.reasons]));
  return keys.map((k, i): Prediction => {
    const row = rows[i];
    if (row === undefined) return { keys: k, score: null, status: 'NOT_FOUND' };
    const score = scores.get(row);
    if (score !== undefined) return { keys: k, score, status: 'OK' };
    return { keys: k, score: null, status: 'INVALID_FEATURES', problems: problems.get(row) ?? [] };
  });
}

/** 404 naming the entity the spine has no online row for: no prediction is made on nulls. */
function checkFound(served: ServedModel, keys: EntityKeys[], rows: Array<Record<string, unknown> | undefined>): void {
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

class TimedOut extends Error {}

/**
 * The request's time budget. `race` answers TimedOut when the budget runs out while the
 * work goes on in the background (it releases what it holds in its own finally blocks);
 * `check` stops the work at its next step once the budget is spent.
 */
class Deadline {
  private expired = false;

  constructor(private readonly ms: number) {}

  check(): void {
    if (this.expired) throw new TimedOut();
  }

  async race<T>(work: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const running = work();
    // After a timeout nobody awaits the work: its failure (often TimedOut from check) is expected.
    running.catch(() => {});
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.expired = true;
        reject(new TimedOut());
      }, this.ms);
    });
    try {
      return await Promise.race([running, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Postgres cancelled the statement (57014, query_canceled): the pool's statement timeout. */
function isStatementTimeout(err: unknown): boolean {
  return pgErrorCode(err) === '57014';
}
