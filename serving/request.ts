/**
 * The prediction request, as fastify validates it before a handler runs (JSON
 * schema), and the model segment of the URL:
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
 */
import { DEFAULT_ALIAS } from '../core/inference-inputs.ts';
import { IDENTIFIER } from '../core/names.ts';
import type { ParsedRef } from '../registry/models/index.ts';
import { HttpError } from './http-errors.ts';

export const PREDICT_ROUTE = '/v1/models/:model/predict';

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

export function predictSchema(maxEntities: number) {
  return {
    params: {
      type: 'object',
      required: ['model'],
      properties: { model: { type: 'string', minLength: 1, maxLength: 200 } },
    },
    body: {
      type: 'object',
      required: ['keys'],
      additionalProperties: false,
      properties: {
        keys: { anyOf: [entity, { type: 'array', minItems: 1, maxItems: maxEntities, items: entity }] },
      },
    },
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
