/**
 * The server's routes: prediction, feature vectors, health and metrics.
 *
 * A prediction: resolve name@ref to a loaded version (no database round trip once
 * served) -> check the keys against the version's spine -> one query for the online
 * features of every entity (spine row + joined groups) -> the signature check and
 * encoding training used -> one forward pass -> scores with the version that made them.
 *
 * Feature vectors: resolve the view (kept once resolved) -> the same key check -> the
 * same lookup (one per view, shared with the versions trained on it) -> the features
 * by name, and on request (`encodedFor`) the model input a version builds from them
 * with its encoder, through the very function scoring encodes with (encodeInput). A
 * caller's own model server gets exactly what ours feeds the model.
 *
 * In a batch, an entity without online features (or whose stored features do not fit
 * the signature) is answered with its status and `score: null`; the others are scored
 * as if asked alone. A request that runs past `requestTimeoutMs` answers 503
 * request_timeout (what it was doing finishes in the background and frees its model
 * lease); a lookup Postgres cancels at the pool's statement timeout answers 503
 * statement_timeout. Both routes follow these rules.
 */
import type { FastifyInstance } from 'fastify';
import type { Counter } from 'prom-client';
import { FailureType, FtiError } from '../core/errors.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import { pgErrorCode } from '../registry/db/index.ts';
import type { Encoder } from '../ml/encoding.ts';
import { assertSignatureFitsView, encodeInput } from '../ml/scoring.ts';
import type { FeatureRow } from '../ml/values.ts';
import type { ParsedRef } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';
import type { Lease } from '../ml/lease-cache.ts';
import type { ServingMetrics } from './metrics.ts';
import { VersionNotAllowedError, type ModelResolver, type ServedAlias } from './model-resolver.ts';
import {
  FEATURES_ROUTE,
  featuresSchema,
  parseModelSegment,
  parseViewSegment,
  predictSchema,
  PREDICT_ROUTE,
  type FeaturesBody,
  type FeaturesResponse,
  type FeatureVector,
  type PredictBody,
  type Prediction,
  type PredictResponse,
} from './request.ts';
import type { EntityKeys, RowScore, ServedModel } from './served-model.ts';
import type { ServedView, ViewResolver } from './served-view.ts';
import { logServed, type SkewLog } from './skew-log.ts';

/** GET /healthz: 'down' (503) when the database is unreachable or the alias listener is deaf (`reason` says which). */
export interface HealthReport {
  status: 'ok' | 'degraded' | 'down';
  /** Why the status is not 'ok'. */
  reason?: string;
  database: 'ok' | 'unreachable';
  /** `reconnecting`: the listener has no connection; `unresponsive`: connected, but its round trips go unanswered. */
  aliasAnnouncements: 'listening' | 'reconnecting' | 'unresponsive';
  aliasListener: {
    /** Age of the listener's last answered round trip (`select 1`); null while disconnected. */
    lastRoundTripAgeMs: number | null;
    /** Times it reconnected after losing its connection. */
    reconnects: number;
    lastError?: string;
  };
  served: ServedAlias[];
}

export interface RouteDeps {
  resolver: ModelResolver;
  views: ViewResolver;
  metrics: ServingMetrics;
  maxEntities: number;
  /** A prediction or feature-vector request answers 503 request_timeout after this long. */
  requestTimeoutMs: number;
  health: () => Promise<HealthReport>;
  /** The served log (skew checks); absent when off. */
  skewLog?: SkewLog;
}

export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { resolver, metrics } = deps;

  app.post<{ Params: { model: string }; Body: PredictBody }>(PREDICT_ROUTE, { schema: predictSchema(deps.maxEntities) }, async (request): Promise<PredictResponse> => {
    const { name, ref, label } = parseModelSegment(request.params.model);
    return withinBudget(deps, metrics.timeouts, 'the prediction', async (deadline) => {
      const lease = await acquire(resolver, name, ref);
      try {
        request.ftiModel = name;
        // Timed out while the model loaded: the load is cached for the next request; stop here.
        deadline.check();
        const served = lease.value;
        const batch = Array.isArray(request.body.keys);
        const entities = Array.isArray(request.body.keys) ? request.body.keys : [request.body.keys];
        const keys = served.parseKeys(entities);
        const { rows, at } = await served.lookup.lookupTimed(keys);
        deadline.check();
        const predictions = await predict(served, keys, rows, batch);
        const { model, version, view } = served.scoring;
        if (deps.skewLog) logServed(deps.skewLog, { model, version, view }, rows, predictions, at);
        const scored = predictions.filter((p) => p.status === 'OK').length;
        if (scored) metrics.predictions.inc({ model, version: String(version) }, scored);
        const notFound = predictions.filter((p) => p.status === 'NOT_FOUND').length;
        if (notFound) metrics.entitiesNotFound.inc({ model }, notFound);
        return { model, version, ref: label, featureView: { name: view.name, version: view.version }, predictions };
      } finally {
        lease.release();
      }
    });
  });

  app.post<{ Params: { view: string }; Body: FeaturesBody }>(FEATURES_ROUTE, { schema: featuresSchema(deps.maxEntities) }, async (request): Promise<FeaturesResponse> => {
    const { name, version } = parseViewSegment(request.params.view);
    const encodedFor = request.body.encodedFor === undefined ? undefined : parseModelSegment(request.body.encodedFor);
    return withinBudget(deps, metrics.featureTimeouts, 'the feature lookup', async (deadline) => {
      const view = await deps.views.resolve(name, version);
      request.ftiView = view.definition.name;
      deadline.check();
      const batch = Array.isArray(request.body.keys);
      const keys = view.parseKeys(Array.isArray(request.body.keys) ? request.body.keys : [request.body.keys]);
      // The version's encoder, held (leased) until the vectors are built.
      const lease = encodedFor ? await acquire(resolver, encodedFor.name, encodedFor.ref) : undefined;
      try {
        const encoding = lease && encodedFor ? encodingFor(lease.value, view.definition, encodedFor.label) : undefined;
        deadline.check();
        const rows = await view.lookup.lookup(keys);
        deadline.check();
        const vectors = featureVectors(view, keys, rows, encoding, batch);
        for (const status of ['OK', 'NOT_FOUND', 'INVALID_FEATURES'] as const) {
          const n = vectors.filter((v) => v.status === status).length;
          if (n) metrics.featureVectors.inc({ view: view.definition.name, status }, n);
        }
        const { name: viewName, version: viewVersion, features } = view.definition;
        return {
          featureView: { name: viewName, version: viewVersion },
          featureNames: features.map((f) => f.name),
          ...(encoding ? { encodedFor: { model: encoding.model, version: encoding.version, ref: encoding.ref, columns: [...encoding.encoder.columns] } } : {}),
          vectors,
        };
      } finally {
        lease?.release();
      }
    });
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
  if (!batch) checkFound(served.scoring.view, keys, rows);
  const found = rows.filter((r): r is FeatureRow => r !== undefined);
  const scores = await served.score(found);
  // Each entity's result, in request order (found keeps that order): undefined where no row was found.
  let next = 0;
  const results = rows.map((row) => (row === undefined ? undefined : scores[next++]));
  if (!batch) checkFeatures(served, keys, results);
  return keys.map((k, i): Prediction => {
    const result = results[i];
    if (result === undefined) return { keys: k, score: null, status: 'NOT_FOUND' };
    if ('score' in result) return { keys: k, score: result.score, status: 'OK' };
    return { keys: k, score: null, status: 'INVALID_FEATURES', problems: result.problems };
  });
}

/** What the feature route encodes with: a version's encoder, once it is known to be trained on the view asked for. */
interface Encoding {
  model: string;
  version: number;
  ref: string;
  encoder: Encoder;
}

/**
 * The encoder of `served` for features of `view`: only a version trained on this very
 * view (its lineage) gets its features from this lookup when it predicts, so only then
 * is the encoded vector what it is fed. Another view may share feature names with
 * other values (another join, another group version): 422 naming the view to ask.
 */
function encodingFor(served: ServedModel, view: FeatureViewDefinition, ref: string): Encoding {
  const { model, version, record, view: trainedOn, encoder } = served.scoring;
  const fail = (message: string) =>
    new HttpError(422, 'model_view_mismatch', message, { model, version, featureView: { name: trainedOn.name, version: trainedOn.version } });
  if (trainedOn.name !== view.name || trainedOn.version !== view.version) {
    throw fail(
      `model ${model} v${version} (${ref}) was trained on feature view ${trainedOn.name} v${trainedOn.version}, not ${view.name} v${view.version}: ask POST /v1/features/${trainedOn.name}@${trainedOn.version} for its input`,
    );
  }
  try {
    assertSignatureFitsView(record, view);
  } catch (err) {
    if (err instanceof FtiError) throw fail(err.message);
    throw err;
  }
  return { model, version, ref, encoder };
}

/**
 * One vector per entity, in request order: the lookup's row (what the scorer gets) and,
 * with an encoding, the model input built from it as scoring builds it. Like
 * predictions: in a batch an entity without a row is NOT_FOUND and one whose row does
 * not fit the signature INVALID_FEATURES; a single entity is a 404 or 422 instead.
 */
function featureVectors(view: ServedView, keys: EntityKeys[], rows: Array<Record<string, unknown> | undefined>, encoding: Encoding | undefined, batch: boolean): FeatureVector[] {
  if (!batch) checkFound(view.definition, keys, rows);
  return keys.map((k, i): FeatureVector => {
    const row = rows[i];
    if (row === undefined) return { keys: k, status: 'NOT_FOUND', features: null, ...(encoding ? { encoded: null } : {}) };
    if (!encoding) return { keys: k, status: 'OK', features: row };
    const x = new Float32Array(encoding.encoder.width);
    const problems = encodeInput(encoding.encoder, row, x);
    if (problems) {
      if (!batch) throw invalidFeatures(encoding.model, encoding.version, k, problems, 1);
      return { keys: k, status: 'INVALID_FEATURES', features: row, encoded: null, problems };
    }
    return { keys: k, status: 'OK', features: row, encoded: Array.from(x) };
  });
}

/** 404 naming the entity the spine has no online row for: no prediction (or vector) is made of nulls. */
function checkFound(view: FeatureViewDefinition, keys: EntityKeys[], rows: Array<Record<string, unknown> | undefined>): void {
  const missing = keys.filter((_, i) => rows[i] === undefined);
  if (missing.length) {
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
function checkFeatures(served: ServedModel, keys: EntityKeys[], results: ReadonlyArray<RowScore | undefined>): void {
  const rejected = results.flatMap((result, i) => (result && 'problems' in result ? [{ keys: keys[i] as EntityKeys, problems: result.problems }] : []));
  const first = rejected[0];
  if (!first) return;
  const { model, version } = served.scoring;
  throw invalidFeatures(model, version, first.keys, first.problems, rejected.length);
}

function invalidFeatures(model: string, version: number, entity: EntityKeys, problems: string[], rejected: number): HttpError {
  return new HttpError(422, 'invalid_features', `the stored features of ${JSON.stringify(entity)} do not fit the signature of ${model} v${version}: ${problems.join('; ')}`, {
    keys: entity,
    problems,
    rejected,
  });
}

/**
 * Runs a request's work within the server's time budget: 503 request_timeout when it
 * runs out (counted as kind "request"), 503 statement_timeout when Postgres cancelled a
 * statement (kind "statement"). `what` names the work in the message.
 */
async function withinBudget<T>(deps: RouteDeps, timeouts: Counter<'kind'>, what: string, work: (deadline: Deadline) => Promise<T>): Promise<T> {
  const deadline = new Deadline(deps.requestTimeoutMs);
  try {
    return await deadline.race(() => work(deadline));
  } catch (err) {
    if (err instanceof TimedOut) {
      timeouts.inc({ kind: 'request' });
      throw new HttpError(503, 'request_timeout', `${what} took longer than the server's request timeout of ${deps.requestTimeoutMs} ms; try again`, { timeoutMs: deps.requestTimeoutMs });
    }
    if (isStatementTimeout(err)) {
      timeouts.inc({ kind: 'statement' });
      throw new HttpError(503, 'statement_timeout', "a database statement of this request ran past the server's statement timeout and was cancelled; try again");
    }
    throw err;
  }
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
