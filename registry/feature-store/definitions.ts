/**
 * Registered definitions (feature groups, feature views): named, versioned and
 * immutable once registered. Registering is idempotent per name and version; a
 * different definition under an existing name and version is refused (make a new
 * version instead). One implementation for both tables.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { transaction } from '../db/index.ts';

export type DefinitionTable = 'feature_groups' | 'feature_views';

interface DefinitionRow {
  name: string;
  version: number;
  fingerprint: string;
}

export interface Registration<Row extends DefinitionRow> {
  table: DefinitionTable;
  def: DefinitionRow;
  /** The Conflict raised when `existing` holds another definition under the same name and version. */
  conflict: (existing: Row) => FtiError;
  /** Creates what the definition needs and inserts its row (inside the registration's transaction). */
  create: (trx: Knex.Transaction) => Promise<Row | undefined>;
}

export async function registerDefinition<Row extends DefinitionRow>(knex: Knex, r: Registration<Row>): Promise<Row> {
  return transaction(knex, async (trx) => {
    // Serialise concurrent registrations of the same name and version (and their DDL).
    await trx.raw('select pg_advisory_xact_lock(hashtext(?))', [`fti.${r.table}:${r.def.name}:${r.def.version}`]);
    const existing = (await trx(r.table).where({ name: r.def.name, version: r.def.version }).first()) as Row | undefined;
    if (existing) {
      if (existing.fingerprint !== r.def.fingerprint) throw r.conflict(existing);
      return existing;
    }
    const row = await r.create(trx);
    if (!row) throw new Error(`insert into ${r.table} returned no row`);
    return row;
  });
}

/** A registered definition by name: the given version, or the latest one. NotFound says which, plus `hint`. */
export async function findDefinition<Row extends DefinitionRow>(knex: Knex, table: DefinitionTable, what: string, name: string, version?: number, hint = ''): Promise<Row> {
  const query = knex(table).where({ name });
  const row = (version === undefined ? await query.orderBy('version', 'desc').first() : await query.andWhere({ version }).first()) as Row | undefined;
  if (!row) throw new FtiError(FailureType.NotFound, `${what} ${name}${version === undefined ? '' : ` v${version}`} is not registered${hint}`);
  return row;
}
