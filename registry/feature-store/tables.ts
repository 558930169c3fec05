/**
 * The tables of one feature group version, and their DDL:
 *
 *   fg_<name>_v<version>            offline store, partitioned by RANGE (_commit_id):
 *                                   one partition per commit, attached when it commits
 *   fg_<name>_v<version>__c<commit> a commit's rows: its staging table while the
 *                                   pipeline writes, then the attached partition
 *   fg_<name>_v<version>__hist      rows superseded by a later commit (time travel)
 *   fg_<name>_v<version>__online    latest row per entity (online-enabled groups); for
 *                                   windowed groups, each entity's current change point
 *                                   and the ones already known ahead (exits of its windows)
 *
 * Every offline row carries `_commit_id` (the commit that wrote it) and
 * `_row_number` (its row in the source), so any feature row traces to its input.
 */
import type { Knex } from 'knex';
import type { FeatureGroupDefinition } from '../../features/definitions.ts';
import { PG_TYPE } from '../../features/schema.ts';
import { grantServingRead, id, int, join, kw, raw, sql, transaction, type Sql } from '../db/index.ts';

export interface GroupTables {
  offline: string;
  history: string;
  online: string;
  commit(commitId: number): string;
}

export function groupTables(name: string, version: number): GroupTables {
  const base = `fg_${name}_v${version}`;
  return {
    offline: base,
    history: `${base}__hist`,
    online: `${base}__online`,
    commit: (commitId) => `${base}__c${commitId}`,
  };
}

/** The stored shape of a group that the SQL needs (from a definition or the registry row). */
export interface GroupShape {
  name: string;
  version: number;
  entityKeys: string[];
  eventTime: string;
  columns: Array<{ name: string; type: keyof typeof PG_TYPE }>;
  online: boolean;
  /**
   * Rows are the change points of windowed aggregates: each holds the value from just
   * after its event time until the next row of its entity (see aggregates.ts).
   */
  windowed: boolean;
}

export function shapeOf(def: FeatureGroupDefinition): GroupShape {
  return { name: def.name, version: def.version, entityKeys: def.entityKeys, eventTime: def.eventTime, columns: def.columns, online: def.online, windowed: def.aggregation !== undefined };
}

export function featureColumns(shape: GroupShape): string[] {
  return shape.columns.map((c) => c.name);
}

/** Columns that are neither keys nor the event time. */
export function valueColumns(shape: GroupShape): string[] {
  return shape.columns.map((c) => c.name).filter((c) => !shape.entityKeys.includes(c) && c !== shape.eventTime);
}

function columnDefs(shape: GroupShape, extra: Sql[]): Sql {
  const defs = shape.columns.map((c) => sql`${id(c.name)} ${kw(PG_TYPE[c.type])}${shape.entityKeys.includes(c.name) || c.name === shape.eventTime ? kw(' not null') : kw('')}`);
  return join([...defs, ...extra], ', ');
}

/** Creates the group's tables if they do not exist (idempotent). */
export async function ensureGroupTables(knex: Knex, shape: GroupShape): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const keyAndTime = [...shape.entityKeys, shape.eventTime];
  await raw(
    knex,
    sql`create table if not exists ${id(t.offline)} (${columnDefs(shape, [kw('_commit_id bigint not null'), kw('_row_number bigint not null'), kw('_available_at timestamptz not null')])}) partition by range (_commit_id)`,
  );
  await raw(
    knex,
    sql`create table if not exists ${id(t.history)} (${columnDefs(shape, [kw('_commit_id bigint not null'), kw('_row_number bigint not null'), kw('_superseded_by bigint not null'), kw('_available_at timestamptz not null')])})`,
  );
  await ensureAvailableAt(knex, shape);
  await raw(knex, sql`create index if not exists ${id(`${t.history}_key`)} on ${id(t.history)} (${join(keyAndTime.map(id), ', ')})`);
  if (shape.online) {
    const primaryKey = onlineKey(shape);
    await raw(
      knex,
      sql`create table if not exists ${id(t.online)} (${columnDefs(shape, [kw('_commit_id bigint not null'), sql`primary key (${join(primaryKey.map(id), ', ')})`])})`,
    );  // The prediction server reads online tables (and nothing else the worker writes).
    await grantServingRead(knex, t.online);
  }
}

/** The online table's key: the entity, or for a windowed group the entity and the change point's time. */
export function onlineKey(shape: GroupShape): string[] {
  return shape.windowed ? [...shape.entityKeys, shape.eventTime] : shape.entityKeys;
}

/** Tables known to have `_available_at`, per connection pool (and so per schema). */
const upgraded = new WeakMap<object, Set<string>>();

/**
 * Tables made before rows recorded when they became known get the column, filled
 * with their event time (what the joins assumed then). Called before a group is
 * written or read; checks each table once per process, a no-op for newer tables.
 */
export async function ensureAvailableAt(knex: Knex, shape: GroupShape): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  const seen = upgraded.get(knex.client) ?? new Set<string>();
  upgraded.set(knex.client, seen);
  for (const table of [t.offline, t.history]) {
    if (seen.has(table)) continue;
    const found = (await knex.raw(
      `select exists (select 1 from information_schema.columns where table_schema = current_schema() and table_name = ? and column_name = '_available_at') as has,
              exists (select 1 from information_schema.tables where table_schema = current_schema() and table_name = ?) as exists`,
      [table, table],
    )) as { rows: Array<{ has: boolean; exists: boolean }> };
    const row = found.rows[0];
    if (row?.exists && !row.has) {
      await transaction(knex, async (trx) => {
        await raw(trx, sql`alter table ${id(table)} add column if not exists _available_at timestamptz`);
        await raw(trx, sql`update ${id(table)} set _available_at = ${id(shape.eventTime)} where _available_at is null`);
        await raw(trx, sql`alter table ${id(table)} alter column _available_at set not null`);
      });
    }
    if (row?.exists) seen.add(table);
  }
}

/**
 * A commit's table: same columns as the offline table, `_commit_id` defaulting to
 * the commit, and a CHECK that matches the partition bound so that ATTACH
 * PARTITION needs no validation scan.
 */
export async function createCommitTable(knex: Knex, shape: GroupShape, commitId: number): Promise<string> {
  const t = groupTables(shape.name, shape.version);
  const table = t.commit(commitId);
  await raw(
    knex,
    sql`create table if not exists ${id(table)} (like ${id(t.offline)}, check (_commit_id >= ${int(commitId)} and _commit_id < ${int(commitId + 1)}))`,
  );
  await raw(knex, sql`alter table ${id(table)} alter column _commit_id set default ${int(commitId)}`);
  return table;
}

export async function dropCommitTable(knex: Knex, shape: GroupShape, commitId: number): Promise<void> {
  await raw(knex, sql`drop table if exists ${id(groupTables(shape.name, shape.version).commit(commitId))}`);
}

export async function attachCommitTable(knex: Knex, shape: GroupShape, commitId: number): Promise<void> {
  const t = groupTables(shape.name, shape.version);
  await raw(knex, sql`alter table ${id(t.offline)} attach partition ${id(t.commit(commitId))} for values from (${int(commitId)}) to (${int(commitId + 1)})`);
}
