/**
 * One model version as the server serves it: the scoring model (encoder, tfjs model,
 * the feature view it was trained on), the online lookup of that view's features,
 * and the schema of the entity keys a request must send: exactly the spine group's
 * entity keys, typed as the group stores them.
 */
import { z } from 'zod';
import type { FeatureType } from '../features/schema.ts';
import { formatIssues } from '../core/errors.ts';
import { loadScoringModel, type ScoringDeps, type ScoringModel } from '../ml/scoring.ts';
import type { OnlineKey, OnlineViewLookup, PredictionStore } from '../registry/predictions/index.ts';
import { HttpError } from './http-errors.ts';

export type EntityKeys = Record<string, string | number | boolean>;

export interface ServedModel {
  scoring: ScoringModel;
  lookup: OnlineViewLookup;
  /** The request's entities, checked against the spine's keys; HttpError 400 naming every problem of the first bad one. */
  parseKeys(entities: readonly unknown[]): EntityKeys[];
  dispose(): void;
}

/** Online lookups are per feature view, shared by every version trained on it. */
export type LookupCache = Map<string, Promise<OnlineViewLookup>>;

export async function loadServedModel(deps: ScoringDeps & { predictions: PredictionStore }, lookups: LookupCache, name: string, version: number): Promise<ServedModel> {
  const scoring = await loadScoringModel(deps, name, version);
  try {
    const viewKey = `${scoring.view.name}@${scoring.view.version}`;
    let lookup = lookups.get(viewKey);
    if (!lookup) {
      const created = deps.predictions.onlineLookup(scoring.view);
      lookup = created;
      lookups.set(viewKey, created);
      created.catch(() => lookups.delete(viewKey));
    }
    const resolved = await lookup;
    const schema = keysSchema(resolved.keys);
    const where = `model ${name} v${version} (feature view ${scoring.view.name} v${scoring.view.version}, keyed by ${resolved.keys.map((k) => `${k.name}: ${k.type}`).join(', ')})`;
    return {
      scoring,
      lookup: resolved,
      parseKeys(entities) {
        return entities.map((entity, i) => {
          const parsed = schema.safeParse(entity);
          if (parsed.success) return parsed.data;
          const problems = formatIssues(parsed.error.issues, { prefix: `keys${entities.length > 1 ? `[${i}]` : ''}` });
          throw new HttpError(400, 'invalid_keys', `${problems}; ${where}`, { expected: Object.fromEntries(resolved.keys.map((k) => [k.name, k.type])) });
        });
      },
      dispose: () => scoring.dispose(),
    };
  } catch (err) {
    scoring.dispose();
    throw err;
  }
}

function keysSchema(keys: OnlineKey[]): z.ZodType<EntityKeys> {
  return z.strictObject(Object.fromEntries(keys.map((k) => [k.name, keySchema(k.type)])), {
    error: (issue) => (issue.code === 'unrecognized_keys' ? `unknown key ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}` : undefined),
  }) as unknown as z.ZodType<EntityKeys>;
}

function keySchema(type: FeatureType): z.ZodType<string | number | boolean> {
  const expected = (what: string) => (issue: { input?: unknown }) => (issue.input === undefined ? 'is missing' : `must be ${what}, got ${describe(issue.input)}`);
  switch (type) {
    case 'int':
      return z.int({ error: expected('an integer') });
    case 'float':
      return z.number({ error: expected('a number') });
    case 'bool':
      return z.boolean({ error: expected('true or false') });
    case 'string':
      return z.string({ error: expected('a string') }).max(1024, 'must be at most 1024 characters');
    case 'timestamp':
      return z.iso.datetime({ offset: true, error: expected('an ISO-8601 timestamp') });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)}`;
  if (typeof value === 'number') return String(value);
  return typeof value;
}
