/** Registered feature views: the definition a view had when first registered. */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { findDefinition, registerDefinition } from './definitions.ts';

export interface FeatureViewRecord {
  id: number;
  definition: FeatureViewDefinition;
  createdAt: Date;
}

interface FeatureViewRow {
  id: number;
  name: string;
  version: number;
  fingerprint: string;
  definition: FeatureViewDefinition;
  created_at: Date;
}

const toFeatureView = (row: FeatureViewRow): FeatureViewRecord => ({ id: row.id, definition: row.definition, createdAt: row.created_at });

/** Idempotent; a different definition under an existing name+version is refused. */
export async function registerFeatureView(knex: Knex, def: FeatureViewDefinition): Promise<FeatureViewRecord> {
  const row = await registerDefinition<FeatureViewRow>(knex, {
    table: 'feature_views',
    def,
    conflict: () => new FtiError(FailureType.Conflict, `feature view ${def.name} v${def.version} is already registered with a different definition; make it version ${def.version + 1}`),
    create: async (trx) => {
      const [inserted] = await trx<FeatureViewRow>('feature_views')
        .insert({ name: def.name, version: def.version, fingerprint: def.fingerprint, definition: JSON.stringify(def) as unknown as FeatureViewDefinition })
        .returning('*');
      return inserted;
    },
  });
  return toFeatureView(row);
}

export async function getFeatureView(knex: Knex, name: string, version?: number): Promise<FeatureViewRecord> {
  return toFeatureView(await findDefinition<FeatureViewRow>(knex, 'feature_views', 'feature view', name, version));
}

export async function getFeatureViewById(knex: Knex, id: number): Promise<FeatureViewRecord> {
  const row = await knex<FeatureViewRow>('feature_views').where({ id }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `feature view #${id} does not exist`);
  return toFeatureView(row);
}

/** The registered views by name with their versions (at most `limit` names, alphabetical; only `name`'s when given). */
export async function listViewVersions(knex: Knex, options: { name?: string; limit?: number } = {}): Promise<Array<{ name: string; versions: number[] }>> {
  const query = knex('feature_views').select('name', knex.raw('array_agg(version order by version) as versions')).groupBy('name').orderBy('name').limit(options.limit ?? 50);
  if (options.name !== undefined) void query.where({ name: options.name });
  const rows = (await query) as Array<{ name: string; versions: number[] }>;
  return rows.map((r) => ({ name: r.name, versions: r.versions.map(Number) }));
}
