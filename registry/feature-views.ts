/** Registered feature views: the definition a view had when first registered. */
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../core/errors.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import { transaction } from './db.ts';

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
  return transaction(knex, async (trx) => {
    await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`fti.feature_view:${def.name}:${def.version}`]);
    const existing = await trx<FeatureViewRow>('feature_views').where({ name: def.name, version: def.version }).first();
    if (existing) {
      if (existing.fingerprint !== def.fingerprint) {
        throw new FtiError(FailureType.Conflict, `feature view ${def.name} v${def.version} is already registered with a different definition; make it version ${def.version + 1}`);
      }
      return toFeatureView(existing);
    }
    const [row] = await trx<FeatureViewRow>('feature_views')
      .insert({ name: def.name, version: def.version, fingerprint: def.fingerprint, definition: JSON.stringify(def) as unknown as FeatureViewDefinition })
      .returning('*');
    if (!row) throw new Error('insert into feature_views returned no row');
    return toFeatureView(row);
  });
}

export async function getFeatureView(knex: Knex, name: string, version?: number): Promise<FeatureViewRecord> {
  const query = knex<FeatureViewRow>('feature_views').where({ name });
  const row = version === undefined ? await query.orderBy('version', 'desc').first() : await query.andWhere({ version }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `feature view ${name}${version === undefined ? '' : ` v${version}`} is not registered`);
  return toFeatureView(row);
}

export async function getFeatureViewById(knex: Knex, id: number): Promise<FeatureViewRecord> {
  const row = await knex<FeatureViewRow>('feature_views').where({ id }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `feature view #${id} does not exist`);
  return toFeatureView(row);
}
