/** Registered feature groups: the schema a definition had when first registered. */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import { storedSchema, type FeatureGroupDefinition, type PartitionRange } from '../../features/definitions.ts';
import { findDefinition, registerDefinition } from './definitions.ts';
import { ensureGroupTables, shapeOf, type GroupShape } from './tables.ts';

export interface FeatureGroupRecord extends GroupShape {
  id: number;
  fingerprint: string;
  description: string | null;
  createdAt: Date;
}

interface FeatureGroupRow {
  id: number;
  name: string;
  version: number;
  fingerprint: string;
  schema: { entityKeys: string[]; eventTime: string; columns: GroupShape['columns']; online: boolean; aggregation?: unknown; partitionBy?: PartitionRange };
  online: boolean;
  description: string | null;
  created_at: Date;
}

function toFeatureGroup(row: FeatureGroupRow): FeatureGroupRecord {
  return {
    id: row.id,
    name: row.name,
    version: row.version,
    entityKeys: row.schema.entityKeys,
    eventTime: row.schema.eventTime,
    columns: row.schema.columns,
    online: row.online,
    windowed: row.schema.aggregation != null,
    // Groups registered before ranges were configurable have monthly ones.
    partitionBy: row.schema.partitionBy ?? 'month',
    fingerprint: row.fingerprint,
    description: row.description,
    createdAt: row.created_at,
  };
}

/**
 * Registers a definition (idempotent) and creates its tables. A different schema
 * under an existing name+version is refused: make a new version instead.
 */
export async function registerFeatureGroup(knex: Knex, def: FeatureGroupDefinition): Promise<FeatureGroupRecord> {
  const row = await registerDefinition<FeatureGroupRow>(knex, {
    table: 'feature_groups',
    def,
    conflict: (existing) =>
      new FtiError(FailureType.Conflict, `feature group ${def.name} v${def.version} is already registered with a different schema; register the new schema as version ${def.version + 1} instead`, {
        registered: existing.schema,
        offered: storedSchema(def),
      }),
    create: async (trx) => {
      await ensureGroupTables(trx, shapeOf(def));
      const [inserted] = await trx<FeatureGroupRow>('feature_groups')
        .insert({ name: def.name, version: def.version, fingerprint: def.fingerprint, schema: storedSchema(def) as FeatureGroupRow['schema'], online: def.online, description: def.description ?? null })
        .returning('*');
      return inserted;
    },
  });
  return toFeatureGroup(row);
}

export async function getFeatureGroup(knex: Knex, name: string, version?: number): Promise<FeatureGroupRecord> {
  return toFeatureGroup(await findDefinition<FeatureGroupRow>(knex, 'feature_groups', 'feature group', name, version, ' (run its feature pipeline first)'));
}

export async function listFeatureGroups(knex: Knex): Promise<FeatureGroupRecord[]> {
  const rows = await knex<FeatureGroupRow>('feature_groups').orderBy([{ column: 'name' }, { column: 'version' }]);
  return rows.map(toFeatureGroup);
}
