/**
 * A view's point-in-time rows for given entities at given times (Feast's
 * get_historical_features with an entity dataframe): what the offline store says the
 * prediction server should have served for an entity at a request time. Skew checks
 * compare it with what was served.
 *
 * Each entity row (`_id`, `_keys` jsonb of the spine's entity keys, `_at`) becomes a
 * spine row at `_at`: the spine group's features are the entity's latest row in the
 * snapshot (the row the online table holds: a prediction is usually asked before the
 * spine event, for tomorrow's flight), and every joined group is joined point-in-time at
 * `_at` by the same SQL training datasets and batch inference use (point-in-time.ts:
 * the view's knowledge-time policy and ttls).
 */
import { PG_TYPE } from '../../features/schema.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { col, id, ids, join, kw, sql, type Sql } from '../db/index.ts';
import type { PitQuery, PitStrategy } from './point-in-time.ts';
import { snapshotSql } from './reads.ts';
import { featureColumns } from './tables.ts';
import { viewQuery, type ViewSnapshot } from './view-snapshot.ts';

/** The carried id of each entity row. */
export const ENTITY_ROW_ID = '_id';

export function entityRowsQuery(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { entities: Sql; strategy: PitStrategy }): PitQuery {
  const base = viewQuery(view, snapshot, { withLabel: false, strategy: options.strategy });
  const spine = snapshot.spine;
  const pin = base.spine.visible;
  const keys = spine.entityKeys;
  const typeOf = (c: string) => spine.columns.find((x) => x.name === c)?.type ?? 'string';
  const others = featureColumns(spine).filter((c) => !keys.includes(c) && c !== spine.eventTime);
  // The keys as the spine stores them, from the entity row's JSON.
  const keyValue = (k: string) => sql`(e._keys ->> ${k}::text)::${kw(PG_TYPE[typeOf(k)])}`;
  const match = join(
    keys.map((k) => sql`${col('g', k)} = ${keyValue(k)}`),
    ' and ',
  );
  const rows = sql`select e._id as ${id(ENTITY_ROW_ID)}, ${join(
    keys.map((k) => sql`${keyValue(k)} as ${id(k)}`),
    ', ',
  )}, e._at as ${id(spine.eventTime)}${others.length ? sql`, ${join(others.map((c) => col('r', c)), ', ')}` : sql``}
    from (${options.entities}) e
    left join lateral (select ${ids(others.length ? others : [spine.eventTime])} from (${snapshotSql(spine, pin)}) g where ${match} order by ${col('g', spine.eventTime)} desc limit 1) r on true`;
  return { ...base, spine: { ...base.spine, rows, carry: [{ name: ENTITY_ROW_ID, pgType: 'bigint' }] } };
}
