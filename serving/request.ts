/**
 * The requests, as fastify validates them before a handler runs (JSON schema), and
 * the model and view segments of their URLs.
 *
 * Predictions:
 *
 *   POST /v1/models/flight_delay/predict              the `champion` alias
 *   POST /v1/models/flight_delay@challenger/predict   another alias
 *   POST /v1/models/flight_delay@3/predict            a pinned version
 *   POST /v1/models/flight_delay@latest/predict       the highest version
 *
 *   { "keys": { "flight_id": 123 } }  or  { "keys": [{ "flight_id": 123 }, { "flight_id": 124 }] }
 *
 * The keys' names and types depend on the model's feature view; served-model.ts
 * checks them once the model is known.
 *
 * The answer has one prediction per entity, in request order, each with a status (as
 * Feast's online reads do): `OK` with its score; `NOT_FOUND` (no online features for
 * the entity) or `INVALID_FEATURES` (its stored features do not fit the signature)
 * with `score: null`. In a batch (`keys` an array) one such entity never fails the
 * others. A single entity (`keys` an object) that cannot be scored is an error
 * instead: 404 unknown_entity or 422 invalid_features.
 *
 * Feature vectors (Feast's get_online_features), from the lookup predictions use:
 *
 *   POST /v1/features/flight_delays      the latest registered version of the view
 *   POST /v1/features/flight_delays@1    a version of it
 *
 *   { "keys": …as above…, "encodedFor": "flight_delay@champion" }   (encodedFor optional)
 *
 * One vector per entity, in request order: the view's features by name as the
 * lookup hands them to the scorer, and with `encodedFor` the model input that version
 * builds from them (its encoder), under the same statuses and rules as predictions.
 */
import { DEFAULT_ALIAS } from '../core/inference-inputs.ts';
import { IDENTIFIER } from '../core/names.ts';
import type { ParsedRef } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';

export const PREDICT_ROUTE = '/v1/models/:model/predict';
export const FEATURES_ROUTE = '/v1/features/:view';

export interface PredictBody {
  keys: Record<string, unknown> | Array<Record<string, unknown>>;
}

export type PredictionStatus = 'OK' | 'NOT_FOUND' | 'INVALID_FEATURES';

export interface Prediction {
  keys: Record<string, unknown>;
  /** null unless status is OK. */
  score: number | null;
  status: PredictionStatus;
  /** INVALID_FEATURES: what is wrong with the stored features. */
  problems?: string[];
}

export interface PredictResponse {
  model: string;
  version: number;
  /** The alias or version the request named (`champion`, `latest`, `3`). */
  ref: string;
  featureView: { name: string; version: number };
  predictions: Prediction[];
}

/** At most this many key columns per entity: a spine rarely has more than two. */
const MAX_KEY_COLUMNS = 16;

const entity = {
  type: 'object',
  minProperties: 1,
  maxProperties: MAX_KEY_COLUMNS,
  additionalProperties: { type: ['string', 'number', 'boolean'] },
} as const;

/** `keys`: one entity (an object) or a batch of at most `maxEntities` (an array); both routes take it. */
function keysProperty(maxEntities: number) {
  return { anyOf: [entity, { type: 'array', minItems: 1, maxItems: maxEntities, items: entity }] } as const;
}

const segmentParams = (param: string) =>
  ({
    type: 'object',
    required: [param],
    properties: { [param]: { type: 'string', minLength: 1, maxLength: 200 } },
  }) as const;

/** A request body of entity keys (and whatever else the route takes); nothing more. */
const keysBody = <P extends Record<string, unknown>>(maxEntities: number, more: P) =>
  ({
    type: 'object',
    required: ['keys'],
    additionalProperties: false,
    properties: { keys: keysProperty(maxEntities), ...more },
  }) as const;

export function predictSchema(maxEntities: number) {
  return {
    params: segmentParams('model'),
    body: keysBody(maxEntities, {}),
    response: {
      200: {
        type: 'object',
        required: ['model', 'version', 'ref', 'featureView', 'predictions'],
        properties: {
          model: { type: 'string' },
          version: { type: 'integer' },
          ref: { type: 'string' },
          featureView: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'integer' } } },
          predictions: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                keys: { type: 'object', additionalProperties: true },
                score: { type: ['number', 'null'] },
                status: { type: 'string' },
                problems: { type: 'array', items: { type: 'string' } },
              },
            },
          },
        },
      },
    },
  } as const;
}

export interface FeaturesBody {
  keys: PredictBody['keys'];
  /** `name`, `name@alias`, `name@N` or `name@latest` (as in the predict URL): also answer the model input that version builds. */
  encodedFor?: string;
}

export interface FeatureVector {
  keys: Record<string, unknown>;
  /** OK; NOT_FOUND: no online row for the entity; INVALID_FEATURES (with encodedFor): its features do not fit the version's signature. */
  status: PredictionStatus;
  /** The view's features by name, exactly as the online lookup hands them to the scorer; null when NOT_FOUND. */
  features: Record<string, unknown> | null;
  /** With encodedFor: the model input, one number per `encodedFor.columns`; null unless OK. */
  encoded?: number[] | null;
  /** INVALID_FEATURES: what is wrong with the stored features. */
  problems?: string[];
}

export interface FeaturesResponse {
  featureView: { name: string; version: number };
  /** The view's feature names, in the view's order. */
  featureNames: string[];
  /** With encodedFor: the version whose encoder built `encoded`, and the name of each encoded column. */
  encodedFor?: { model: string; version: number; ref: string; columns: string[] };
  vectors: FeatureVector[];
}

export function featuresSchema(maxEntities: number) {
  return {
    params: segmentParams('view'),
    body: keysBody(maxEntities, { encodedFor: { type: 'string', minLength: 1, maxLength: 200 } }),
    response: {
      200: {
        type: 'object',
        required: ['featureView', 'featureNames', 'vectors'],
        properties: {
          featureView: { type: 'object', properties: { name: { type: 'string' }, version: { type: 'integer' } } },
          featureNames: { type: 'array', items: { type: 'string' } },
          encodedFor: {
            type: 'object',
            properties: { model: { type: 'string' }, version: { type: 'integer' }, ref: { type: 'string' }, columns: { type: 'array', items: { type: 'string' } } },
          },
          vectors: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                keys: { type: 'object', additionalProperties: true },
                status: { type: 'string' },
                features: { type: ['object', 'null'], additionalProperties: true },
                encoded: { type: ['array', 'null'], items: { type: 'number' } },
                problems: { type: 'array', items: { type: 'string' } },
              },
            },
          },
        },
      },
    },
  } as const;
}

/** `name`, `name@alias`, `name@3` or `name@latest`; a missing ref means the champion alias. */
export function parseModelSegment(segment: string): { name: string; ref: ParsedRef; label: string } {
  const at = segment.indexOf('@');
  const name = at < 0 ? segment : segment.slice(0, at);
  const ref = at < 0 ? DEFAULT_ALIAS : segment.slice(at + 1);
  if (!IDENTIFIER.test(name)) throw new HttpError(400, 'invalid_model', `model name must match ^[a-z][a-z0-9_]{0,62}$, got ${JSON.stringify(name.slice(0, 80))}`);
  if (/^[0-9]{1,9}$/.test(ref) && Number(ref) > 0) return { name, ref: { kind: 'version', version: Number(ref) }, label: ref };
  if (ref === 'latest') return { name, ref: { kind: 'latest' }, label: ref };
  if (IDENTIFIER.test(ref)) return { name, ref: { kind: 'alias', alias: ref }, label: ref };
  throw new HttpError(400, 'invalid_model', `a model reference is name, name@alias, name@<version> or name@latest, got ${JSON.stringify(segment.slice(0, 80))}`);
}

/** `name` (the latest registered version of the view) or `name@N`. */
export function parseViewSegment(segment: string): { name: string; version?: number } {
  const at = segment.indexOf('@');
  const name = at < 0 ? segment : segment.slice(0, at);
  if (!IDENTIFIER.test(name)) throw new HttpError(400, 'invalid_view', `feature view name must match ^[a-z][a-z0-9_]{0,62}$, got ${JSON.stringify(name.slice(0, 80))}`);
  if (at < 0) return { name };
  const version = segment.slice(at + 1);
  if (/^[0-9]{1,9}$/.test(version) && Number(version) > 0) return { name, version: Number(version) };
  throw new HttpError(400, 'invalid_view', `a feature view is name (its latest version) or name@<version>, got ${JSON.stringify(segment.slice(0, 80))}`);
}
