/**
 * Feature group definitions, written in TypeScript by users:
 *
 *   export const flights = defineFeatureGroup({
 *     name: 'flights', version: 1,
 *     entityKeys: ['flight_id'], eventTime: 'event_time',
 *     features: { flight_id: 'int', event_time: 'timestamp', origin: 'string', ... },
 *     source: { kind: 'parquet', path: '…/flights-3m.parquet' },
 *     transform: (raw, { rowNumber }) => ({ … }),
 *     online: true,
 *     expectations: [notNull('origin'), range('distance', { min: 0 })],
 *   });
 *
 * A derived group computes windowed aggregates of another group instead of
 * reading a source (see `aggregation`). Definitions are code; registering one
 * stores its schema (and a fingerprint of it) in the registry.
 */
import crypto from 'node:crypto';
import { z } from 'zod';
import { formatIssues } from '../core/errors.ts';
import { SourceSpecSchema, type FileSourceSpec, type SourceSpec } from '../core/inputs.ts';
import { IDENTIFIER } from '../core/names.ts';
import { durationMs, isDuration, type Duration } from '../core/duration.ts';
import { FEATURE_TYPES, type FeatureRow, type FeatureType } from './schema.ts';
import { isTimeZone, UTC } from './timestamps.ts';

export type { FileSourceSpec, SourceSpec };

export type Expectation =
  | { kind: 'not_null'; column: string }
  | { kind: 'range'; column: string; min?: number; max?: number }
  | { kind: 'allowed_values'; column: string; values: Array<string | number | boolean> }
  /** At most one row per entity key and event time within a commit. */
  | { kind: 'unique_key' };

export type AggregateFn = 'avg' | 'sum' | 'count' | 'min' | 'max';

export interface Aggregation {
  /** Entity keys of the derived group, each taken from a column of the source group. */
  groupBy: Record<string, string>;
  /** Window lengths; a feature `<metric>_<window>` is made for each metric and window. */
  windows: Duration[];
  metrics: Array<{ name: string; fn: AggregateFn; /** source column; omitted for a row count */ column?: string }>;
}

/** The longest of an aggregation's windows, in ms: how far back its rows reach, and how long after its last event they keep changing. */
export function longestWindowMs(aggregation: Aggregation): number {
  return Math.max(...aggregation.windows.map(durationMs));
}

export type ValidationPolicy = 'strict' | 'quarantine';

export type RawRow = Record<string, unknown>;
export type RowTransform = (raw: RawRow, context: { rowNumber: number }) => Record<string, unknown>;

export interface FeatureGroupInput {
  name: string;
  version: number;
  description?: string;
  entityKeys: string[];
  eventTime: string;
  /** Every column: entity keys, event time and features, with their types. Derived from `aggregation` when omitted. */
  features?: Record<string, FeatureType>;
  source: SourceSpec;
  transform?: RowTransform;
  aggregation?: Aggregation;
  online?: boolean;
  expectations?: Expectation[];
  validation?: ValidationPolicy;
  /**
   * Under `quarantine`: the largest share of a run's rows that may be rejected (0 to 1,
   * default 0.05). Beyond it nothing is committed (FtiValidationFailed); the rejected rows
   * are kept with their reasons.
   */
  maxRejectRatio?: number;
  /**
   * The zone of timestamps the source gives without one (CSV and NDJSON text, Parquet
   * TIMESTAMP without isAdjustedToUTC, Postgres `timestamp`): `UTC` (the default), a fixed
   * offset such as `+05:30`, or an IANA name such as `America/New_York`. Never the
   * worker's local zone.
   */
  timeZone?: string;
  /**
   * The raw columns the transform reads, with their types. A file source's columns are
   * checked against them before any row is read (a missing or renamed column fails the run
   * at once), and their values are typed (timestamps in `timeZone`) before the transform
   * sees them, so it gets the same values from Parquet, CSV or NDJSON. Without a transform
   * the features themselves are the columns read; with one and without this, the source's
   * columns cannot be checked and the transform gets the values as the format has them.
   */
  sourceColumns?: Record<string, FeatureType>;
  /** A feature that is a label (for spines of feature views); informational. */
  label?: string;
  /**
   * When a row becomes known (its available-at time, which point-in-time joins use):
   * `{ lag: '1h' }`, its event time plus a lag (an hourly pipeline's delay); or
   * `{ column: 'departed_at' }`, a timestamp feature of the row. Default: at its event
   * time. A row that arrives for a window the group had already committed is known only
   * from its commit's visibility time, whatever this says.
   */
  availability?: Availability;
  /** Rows older than this (event time before t − ttl) do not join onto a spine row at t; default: no limit. */
  ttl?: Duration;
  /**
   * The event-time range of one partition of the offline table: 'day', 'week', 'month'
   * (default) or 'year'. Reads and joins over a time window touch only its partitions.
   * Fixed when the group version is first registered.
   */
  partitionBy?: PartitionRange;
}

export const PARTITION_RANGES = ['day', 'week', 'month', 'year'] as const;
export type PartitionRange = (typeof PARTITION_RANGES)[number];

export type Availability = { lag: Duration } | { column: string };

export interface FeatureGroupDefinition extends Required<Omit<FeatureGroupInput, 'description' | 'transform' | 'aggregation' | 'label' | 'features' | 'sourceColumns' | 'availability' | 'ttl' | 'partitionBy'>> {
  partitionBy: PartitionRange;
  /** Undefined: rows are known at their event time. */
  availability: Availability | undefined;
  ttl: Duration | undefined;
  description: string | undefined;
  transform: RowTransform | undefined;
  aggregation: Aggregation | undefined;
  label: string | undefined;
  sourceColumns: Record<string, FeatureType> | undefined;
  /** Ordered columns: entity keys, event time, then features. */
  columns: Array<{ name: string; type: FeatureType }>;
  /** sha256 of the stored schema; a different schema under the same name+version is refused. */
  fingerprint: string;
}

const identifier = z.string().regex(IDENTIFIER, `must match ${IDENTIFIER.source}`);

const ExpectationSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('not_null'), column: identifier }),
  z.object({ kind: z.literal('range'), column: identifier, min: z.number().optional(), max: z.number().optional() }),
  z.object({ kind: z.literal('allowed_values'), column: identifier, values: z.array(z.union([z.string(), z.number(), z.boolean()])).min(1) }),
  z.object({ kind: z.literal('unique_key') }),
]);

const InputSchema = z.object({
  // Table names are fg_<name>_v<version> plus suffixes, within Postgres' 63 bytes.
  name: identifier.refine((n) => n.length <= 40, 'feature group names are at most 40 characters'),
  version: z.number().int().positive().max(9999),
  description: z.string().optional(),
  entityKeys: z.array(identifier).min(1),
  eventTime: identifier,
  features: z.record(identifier, z.enum(FEATURE_TYPES)).optional(),
  source: SourceSpecSchema,
  transform: z.function().optional(),
  aggregation: z
    .object({
      groupBy: z.record(identifier, identifier),
      windows: z.array(z.string().refine(isDuration, 'windows look like 30m, 2h or 7d')).min(1),
      metrics: z.array(z.object({ name: identifier, fn: z.enum(['avg', 'sum', 'count', 'min', 'max']), column: identifier.optional() })).min(1),
    })
    .optional(),
  online: z.boolean().default(false),
  expectations: z.array(ExpectationSchema).default([]),
  validation: z.enum(['strict', 'quarantine']).default('strict'),
  maxRejectRatio: z.number().min(0).max(1).default(0.05),
  timeZone: z.string().refine(isTimeZone, 'must be UTC, an offset such as +05:30, or an IANA time zone such as America/New_York').default(UTC),
  sourceColumns: z.record(z.string().min(1).max(256), z.enum(FEATURE_TYPES)).optional(),
  label: identifier.optional(),
  availability: z.union([z.strictObject({ lag: z.string().refine(isDuration, 'a lag looks like 30m, 1h or 2d') }), z.strictObject({ column: identifier })]).optional(),
  ttl: z.string().refine(isDuration, 'a ttl looks like 30m, 1h or 7d').optional(),
  partitionBy: z.enum(PARTITION_RANGES).default('month'),
});

export function defineFeatureGroup(input: FeatureGroupInput): FeatureGroupDefinition {
  const parsed = InputSchema.safeParse(input);
  if (!parsed.success) {
    throw new TypeError(`feature group ${JSON.stringify(input.name)} v${input.version}: ${formatIssues(parsed.error.issues)}`);
  }
  const d = parsed.data;
  const where = `feature group ${d.name} v${d.version}`;
  const aggregation = input.aggregation;
  if ((d.source.kind === 'feature_group') !== (aggregation !== undefined)) {
    throw new TypeError(`${where}: a feature_group source needs an aggregation, and an aggregation needs a feature_group source`);
  }
  const schema = input.features ?? (aggregation ? aggregatedSchema(d.entityKeys, d.eventTime, aggregation, where) : undefined);
  if (!schema) throw new TypeError(`${where}: features are required`);
  for (const key of [...d.entityKeys, d.eventTime]) {
    if (!(key in schema)) throw new TypeError(`${where}: ${key} is not among the features`);
  }
  if (schema[d.eventTime] !== 'timestamp') throw new TypeError(`${where}: event time ${d.eventTime} must be a timestamp`);
  for (const e of d.expectations) {
    if (e.kind !== 'unique_key' && !(e.column in schema)) throw new TypeError(`${where}: expectation on unknown feature ${e.column}`);
  }
  if (d.label && !(d.label in schema)) throw new TypeError(`${where}: label ${d.label} is not among the features`);
  if (d.availability && 'column' in d.availability && schema[d.availability.column] !== 'timestamp') {
    throw new TypeError(`${where}: availability column ${d.availability.column} must be a timestamp feature`);
  }
  if (d.availability && aggregation) throw new TypeError(`${where}: an aggregate group's rows are known at their own time; availability is declared on its source`);
  const reserved = Object.keys(schema).filter((c) => c.startsWith('_'));
  if (reserved.length) throw new TypeError(`${where}: names starting with _ are reserved (${reserved.join(', ')})`);

  const ordered = [...d.entityKeys, d.eventTime, ...Object.keys(schema).filter((c) => !d.entityKeys.includes(c) && c !== d.eventTime)];
  const columns = ordered.map((name) => ({ name, type: schema[name] as FeatureType }));
  return {
    name: d.name,
    version: d.version,
    description: d.description,
    entityKeys: d.entityKeys,
    eventTime: d.eventTime,
    source: d.source as SourceSpec,
    transform: input.transform,
    aggregation,
    online: d.online,
    expectations: d.expectations,
    validation: d.validation,
    maxRejectRatio: d.maxRejectRatio,
    timeZone: d.timeZone,
    sourceColumns: d.sourceColumns,
    label: d.label,
    availability: d.availability as Availability | undefined,
    ttl: d.ttl as Duration | undefined,
    partitionBy: d.partitionBy,
    columns,
    // Availability shapes the stored rows (their available-at times); a default one leaves older fingerprints as they were.
    fingerprint: fingerprint({ entityKeys: d.entityKeys, eventTime: d.eventTime, columns, online: d.online, aggregation: aggregation ?? null, ...(d.availability ? { availability: d.availability } : {}) }),
  };
}

/** The columns of a derived group: its keys, event time, and `<metric>_<window>` per metric and window. */
function aggregatedSchema(entityKeys: string[], eventTime: string, aggregation: Aggregation, where: string): Record<string, FeatureType> {
  for (const key of entityKeys) {
    if (!(key in aggregation.groupBy)) throw new TypeError(`${where}: entity key ${key} is not in aggregation.groupBy`);
  }
  const schema: Record<string, FeatureType> = { [eventTime]: 'timestamp' };
  for (const key of entityKeys) schema[key] = 'string';
  for (const metric of aggregation.metrics) {
    for (const window of aggregation.windows) schema[aggregateFeatureName(metric.name, window)] = metric.fn === 'count' ? 'int' : 'float';
  }
  return schema;
}

export function aggregateFeatureName(metric: string, window: Duration): string {
  return `${metric}_${window}`;
}

/** Everything that shapes the stored tables, canonicalised and hashed. */
function fingerprint(schema: unknown): string {
  return crypto.createHash('sha256').update(JSON.stringify(schema)).digest('hex');
}

/** The stored form of a definition: what the registry keeps (no code). */
export function storedSchema(def: FeatureGroupDefinition): Record<string, unknown> {
  return {
    entityKeys: def.entityKeys,
    eventTime: def.eventTime,
    columns: def.columns,
    online: def.online,
    aggregation: def.aggregation ?? null,
    expectations: def.expectations,
    validation: def.validation,
    maxRejectRatio: def.maxRejectRatio,
    timeZone: def.timeZone,
    sourceColumns: def.sourceColumns ?? null,
    label: def.label ?? null,
    source: def.source,
    availability: def.availability ?? null,
    ttl: def.ttl ?? null,
    partitionBy: def.partitionBy,
  };
}

/**
 * The raw columns a definition reads from its source: `sourceColumns`, else (without a
 * transform) its features. Undefined when a transform reads columns it does not declare.
 */
export function sourceColumnsRead(def: FeatureGroupDefinition): string[] | undefined {
  if (def.sourceColumns) return Object.keys(def.sourceColumns);
  if (!def.transform) return def.columns.map((c) => c.name);
  return undefined;
}

export type { FeatureRow, FeatureType };
