/**
 * Training/serving skew: the feature vectors the prediction server logged (skew_log)
 * against the offline point-in-time vectors of the same (entity, request time), which
 * the caller hands in as SQL (the feature store's entityRows over the log's rows).
 *
 * Per feature: the share of logged rows whose served value differs from the offline
 * one, and the largest absolute difference. Numbers (int, float) are equal within a
 * relative 1e-6 (|a − b| ≤ 1e-6 · max(|a|, |b|)); text and booleans are equal
 * only when identical; a null equals only a null. Computed in Postgres, where the rows
 * are.
 */
import type { Knex } from 'knex';
import type { FeatureViewDefinition, ViewFeature } from '../../features/views.ts';
import { col, id, join, kw, raw, sql, type Sql } from '../db/index.ts';

export interface FeatureSkew {
  feature: string;
  /** numeric: int and float; categorical: text and booleans. */
  kind: 'numeric' | 'categorical';
  /** Logged rows compared. */
  rows: number;
  mismatches: number;
  mismatchShare: number;
  /** Numbers: the largest |served − offline| where both are present; null for categories. */
  maxAbsDiff: number | null;
  /** Mismatches where exactly one side is null. */
  nullMismatches: number;
}

/** A logged prediction, as the server hands it over. */
export interface ServedRow {
  model: string;
  modelVersion: number;
  featureView: { name: string; version: number };
  entityKeys: Record<string, unknown>;
  servedAt: Date;
  /** The feature vector by view feature name, raw, as the online lookup gave it to the scorer. */
  features: Record<string, unknown>;
  prediction: number | null;
}

/** Relative tolerance of numeric comparisons. */
export const RELATIVE_TOLERANCE = 1e-6;

const OFFLINE = '_fti_skew_offline';

/** One multi-row INSERT (the serving role may insert here and nothing else: no RETURNING). */
export async function insertServed(knex: Knex, rows: readonly ServedRow[]): Promise<void> {
  if (rows.length === 0) return;
  await knex('skew_log').insert(
    rows.map((r) => ({
      model: r.model,
      model_version: r.modelVersion,
      feature_view: r.featureView.name,
      feature_view_version: r.featureView.version,
      entity_keys: JSON.stringify(r.entityKeys),
      served_at: r.servedAt,
      features: JSON.stringify(r.features),
      prediction: r.prediction,
    })),
  );
}

/** The logged rows of a model version served in [start, end), as the feature store's entityRows takes them. */
export function servedEntities(window: { model: string; modelVersion: number; start: Date; end: Date }): Sql {
  return sql`select id as _id, entity_keys as _keys, served_at as _at from skew_log ${logFilter(window)}`;
}

function logFilter(w: { model: string; modelVersion: number; start: Date; end: Date }, alias?: string): Sql {
  const c = (name: string) => (alias ? col(alias, name) : id(name));
  return sql`where ${c('model')} = ${w.model} and ${c('model_version')} = ${w.modelVersion} and ${c('served_at')} >= ${w.start} and ${c('served_at')} < ${w.end}`;
}

/** Compares each logged vector with its offline row (`offline`: `_id` and the view's features). */
export async function measureSkew(
  trx: Knex.Transaction,
  input: { view: FeatureViewDefinition; window: { model: string; modelVersion: number; start: Date; end: Date }; offline: Sql },
): Promise<{ rows: number; features: FeatureSkew[] }> {
  await raw(trx, sql`create temp table ${id(OFFLINE)} on commit drop as select * from (${input.offline}) o`);
  await raw(trx, sql`create index on ${id(OFFLINE)} (_id)`);
  const columns = input.view.features.flatMap((f, i) => {
    const c = compare(f);
    return [
      sql`count(*) filter (where ${c.mismatch})::bigint as ${id(`m${i}`)}`,
      sql`count(*) filter (where (${c.served} is null) <> (${c.offline} is null))::bigint as ${id(`n${i}`)}`,
      c.diff ? sql`max(${c.diff})::double precision as ${id(`d${i}`)}` : sql`null::double precision as ${id(`d${i}`)}`,
    ];
  });
  const result = (await raw(
    trx,
    sql`select count(*)::bigint as rows, ${join(columns, ', ')}
        from skew_log l left join ${id(OFFLINE)} o on o._id = l.id
        ${logFilter(input.window, 'l')}`,
  )) as { rows: Array<Record<string, number | null>> };
  const row = result.rows[0] ?? {};
  const rows = Number(row.rows ?? 0);
  const features = input.view.features.map((f, i): FeatureSkew => {
    const mismatches = Number(row[`m${i}`] ?? 0);
    const diff = row[`d${i}`];
    return {
      feature: f.name,
      kind: kindOf(f),
      rows,
      mismatches,
      mismatchShare: rows === 0 ? 0 : mismatches / rows,
      maxAbsDiff: diff === null || diff === undefined ? null : Number(diff),
      nullMismatches: Number(row[`n${i}`] ?? 0),
    };
  });
  return { rows, features };
}

function kindOf(f: ViewFeature): FeatureSkew['kind'] {
  return f.type === 'string' || f.type === 'bool' ? 'categorical' : 'numeric';
}

/** The served and offline values of a feature, typed alike, and when they differ. */
function compare(f: ViewFeature): { served: Sql; offline: Sql; mismatch: Sql; diff?: Sql } {
  const text = sql`(l.features ->> ${f.name}::text)`;
  const stored = col('o', f.name);
  const eitherNull = (s: Sql, o: Sql) => sql`(${s} is null) <> (${o} is null)`;
  switch (f.type) {
    case 'int':
    case 'float': {
      const s = sql`${text}::double precision`;
      const o = sql`${stored}::double precision`;
      const apart = sql`abs(${s} - ${o}) > ${kw(String(RELATIVE_TOLERANCE))} * greatest(abs(${s}), abs(${o}))`;
      return { served: s, offline: o, mismatch: sql`(${eitherNull(s, o)} or coalesce(${apart}, false))`, diff: sql`abs(${s} - ${o})` };
    }
    case 'bool': {
      const s = sql`${text}::boolean`;
      return { served: s, offline: stored, mismatch: sql`${s} is distinct from ${stored}` };
    }
    case 'string':
      return { served: text, offline: stored, mismatch: sql`${text} is distinct from ${stored}::text` };
  }
}
