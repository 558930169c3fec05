/**
 * One model version as the server serves it: the scoring model (encoder, tfjs model,
 * the feature view it was trained on), the online lookup of that view's features,
 * and the schema of the entity keys a request must send: exactly the spine group's
 * entity keys, typed as the group stores them.
 */
import { z } from 'zod';
import type { FeatureType } from '../features/schema.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import { formatIssues } from '../core/errors.ts';
import type { FeatureRow } from '../ml/values.ts';
import { loadScoringModel, type ScoringDeps, type ScoringModel } from '../ml/scoring.ts';
import type { OnlineKey, OnlineViewLookup, PredictionStore } from '../registry/predictions/index.ts';
import { DynamicBatcher, type BatchTiming, type DynamicBatcherOptions } from './dynamic-batch.ts';
import { HttpError } from './http-errors.ts';

export type EntityKeys = Record<string, string | number | boolean>;

/** A row's score, or why its stored features do not fit the version's signature. */
export type RowScore = { score: number } | { problems: string[] };

/** An online lookup that also says which request time a batched lookup read the features as of. */
export interface TimedLookup extends OnlineViewLookup {
  /** The rows of `entities` as of now, batched with concurrent requests, and the instant the lookup used (one per call). */
  lookupTimed(entities: ReadonlyArray<Readonly<Record<string, unknown>>>): Promise<{ rows: Array<Record<string, unknown> | undefined>; at: Date }>;
}

export interface ServedModel {
  scoring: ScoringModel;
  lookup: TimedLookup;
  /** One result per row, in order; the rows of concurrent requests are scored in one call (dynamic-batch.ts). */
  score(rows: readonly FeatureRow[]): Promise<RowScore[]>;
  /** The request's entities, checked against the spine's keys; HttpError 400 naming every problem of the first bad one. */
  parseKeys(entities: readonly unknown[]): EntityKeys[];
  dispose(): void;
}

export type BatchStage = 'lookup' | 'score';

/** Told each batch's size as it starts (its entities, the requests in it) and its timing as it settles, by stage. */
export interface BatchObserver {
  started(stage: BatchStage, items: number, calls: number): void;
  settled(stage: BatchStage, timing: BatchTiming): void;
}

/** The batcher's options that report to `observer` under `stage`. */
function observed(stage: BatchStage, observer: BatchObserver | undefined): Pick<DynamicBatcherOptions, 'onBatch' | 'onSettled'> {
  return observer ? { onBatch: (items, calls) => observer.started(stage, items, calls), onSettled: (timing) => observer.settled(stage, timing) } : {};
}

/** Online lookups are per feature view, shared by every version trained on it and by the feature route. */
export interface LookupCache {
  views: Map<string, Promise<TimedLookup>>;
  onBatch?: BatchObserver;
}

/** Entities per batched lookup or scoring call: well within one query's and one forward pass's reach. */
const BATCH_ITEMS = 512;
/** Lookups of one view in flight at once (database round trips overlap); scoring is CPU work, one at a time. */
export const LOOKUPS_IN_FLIGHT = 2;

/**
 * The online lookup of `view`, created once per view (name@version) and shared: a lookup
 * that fails to be created (the view cannot be served online) is not kept, so the next
 * request checks again. Lookups as of now from concurrent requests run as one query.
 */
export function sharedLookup(predictions: PredictionStore, lookups: LookupCache, view: FeatureViewDefinition): Promise<TimedLookup> {
  const viewKey = `${view.name}@${view.version}`;
  let lookup = lookups.views.get(viewKey);
  if (!lookup) {
    // It keeps a connection for each lookup it runs at once, rather than borrow one per batch.
    const created = predictions.onlineLookup(view, { heldConnections: LOOKUPS_IN_FLIGHT }).then((l) => batchedLookup(l, lookups.onBatch));
    lookup = created;
    lookups.views.set(viewKey, created);
    created.catch(() => lookups.views.delete(viewKey));
  }
  return lookup;
}

/** Gives back the connections every lookup created so far holds (at shutdown, before the pool is destroyed). */
export async function closeLookups(lookups: LookupCache): Promise<void> {
  const created = await Promise.allSettled(lookups.views.values());
  await Promise.all(created.map((c) => (c.status === 'fulfilled' ? c.value.close() : undefined)));
}

function batchedLookup(lookup: OnlineViewLookup, onBatch?: BatchObserver): TimedLookup {
  // Each batch reads as of one instant, handed back with every row: the skew log records
  // the very time windowed groups were evaluated at. A call's entities share one batch.
  const batcher = new DynamicBatcher<Readonly<Record<string, unknown>>, { row: Record<string, unknown> | undefined; at: Date }>(
    async (entities) => {
      const at = new Date();
      return (await lookup.lookup(entities, at)).map((row) => ({ row, at }));
    },
    {
      maxItems: BATCH_ITEMS,
      maxInFlight: LOOKUPS_IN_FLIGHT,
      ...observed('lookup', onBatch),
    },
  );
  const timed = async (entities: ReadonlyArray<Readonly<Record<string, unknown>>>) => {
    const results = await batcher.submit(entities);
    return { rows: results.map((r) => r.row), at: results[0]?.at ?? new Date() };
  };
  return {
    ...lookup,
    // A lookup as of another time than now is its own query.
    lookup: async (entities, at) => (at === undefined ? (await timed(entities)).rows : lookup.lookup(entities, at)),
    lookupTimed: timed,
  };
}

/** Scores rows of concurrent requests in one call; each row's result comes back to its request. */
function batchedScoring(scoring: ScoringModel, onBatch?: BatchObserver): (rows: readonly FeatureRow[]) => Promise<RowScore[]> {
  const batcher = new DynamicBatcher<FeatureRow, RowScore>(
    async (rows) => {
      const scored = await scoring.scoreRows(rows);
      // Both lists keep the order of `rows`, so one walk pairs each row with its result.
      let valid = 0;
      let rejected = 0;
      return rows.map((row): RowScore => {
        if (scored.rows[valid] === row) return { score: scored.scores[valid++] as number };
        return { problems: scored.rejected[rejected++]?.reasons ?? [] };
      });
    },
    { maxItems: BATCH_ITEMS, ...observed('score', onBatch) },
  );
  return (rows) => batcher.submit(rows);
}

/**
 * The request's entities, checked against the spine's keys (exactly those names, typed
 * as the spine group stores them): HttpError 400 invalid_keys naming every problem of
 * the first bad entity, and `where` (what the keys are for).
 */
export function entityKeysParser(keys: readonly OnlineKey[], where: string): (entities: readonly unknown[]) => EntityKeys[] {
  const schema = keysSchema(keys);
  const expected = Object.fromEntries(keys.map((k) => [k.name, k.type]));
  return (entities) =>
    entities.map((entity, i) => {
      const parsed = schema.safeParse(entity);
      if (parsed.success) return parsed.data;
      const problems = formatIssues(parsed.error.issues, { prefix: `keys${entities.length > 1 ? `[${i}]` : ''}` });
      throw new HttpError(400, 'invalid_keys', `${problems}; ${where}`, { expected });
    });
}

/** `flight_id: int, …`: the keys as an error message names them. */
export function describeKeys(keys: readonly OnlineKey[]): string {
  return keys.map((k) => `${k.name}: ${k.type}`).join(', ');
}

export async function loadServedModel(deps: ScoringDeps & { predictions: PredictionStore }, lookups: LookupCache, name: string, version: number): Promise<ServedModel> {
  const scoring = await loadScoringModel(deps, name, version);
  try {
    const resolved = await sharedLookup(deps.predictions, lookups, scoring.view);
    const where = `model ${name} v${version} (feature view ${scoring.view.name} v${scoring.view.version}, keyed by ${describeKeys(resolved.keys)})`;
    return {
      scoring,
      lookup: resolved,
      score: batchedScoring(scoring, lookups.onBatch),
      parseKeys: entityKeysParser(resolved.keys, where),
      dispose: () => scoring.dispose(),
    };
  } catch (err) {
    scoring.dispose();
    throw err;
  }
}

function keysSchema(keys: readonly OnlineKey[]): z.ZodType<EntityKeys> {
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
