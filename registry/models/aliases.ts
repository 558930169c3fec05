/**
 * Aliases: movable pointers to model versions. Every move appends a row to
 * model_alias_history and NOTIFYs ALIAS_CHANNEL in the same transaction, so servers
 * hear of a move exactly when it commits. Rollback is an undo stack over 'set' moves.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { inTransaction } from '../db/index.ts';
import { assertName, assertVersionNumber, lockModel, modelId, STORE } from './locks.ts';
import { refNotFound } from './refs.ts';
import { toAliasMove, toModelAlias, type AliasMoveRow, type ModelAliasRow } from './rows.ts';
import { ALIAS_CHANNEL, type AliasChange, type AliasMove, type AliasMoveKind, type AliasMoveOptions, type ModelAlias } from './types.ts';

/**
 * Points `alias` at `version`. Pointing it where it already points changes nothing.
 * With `expectedVersion` it is a compare-and-set: under the model's lock, the alias
 * must still point at that version (null: must not exist yet), else Conflict and no move.
 */
export async function setAlias(knex: Knex, name: string, alias: string, version: number, options: AliasMoveOptions = {}): Promise<AliasChange> {
  assertName(name, 'model name');
  assertName(alias, 'alias');
  assertVersionNumber(version);
  const expected = options.expectedVersion;
  if (expected !== undefined && expected !== null) assertVersionNumber(expected);
  return inTransaction(knex, STORE, async (trx) => {
    const model = await lockModel(trx, name);
    const exists = await trx('model_versions').where({ model_id: model.id, version }).first('id');
    if (!exists) throw await refNotFound(trx, name, { kind: 'version', version });
    const current = await currentVersion(trx, model.id, alias);
    if (current === version) return { model: name, alias, kind: 'set', fromVersion: current, toVersion: version, changed: false };
    if (expected !== undefined && (current ?? null) !== expected) {
      const now = current === undefined ? 'is not set' : `points at version ${current}`;
      const was = expected === null ? 'not to exist yet' : `to point at version ${expected}`;
      throw new FtiError(FailureType.Conflict, `${name}@${alias} ${now}, but the move to version ${version} expected it ${was}: it moved in between; read it again`, {
        model: name,
        alias,
        expectedVersion: expected,
        currentVersion: current ?? null,
      });
    }
    const move = await recordMove(trx, { modelId: model.id, name, alias, kind: 'set', from: current ?? null, to: version, undoesId: null, actor: options.actor, reason: options.reason });
    return { model: name, alias, kind: 'set', fromVersion: move.fromVersion, toVersion: version, changed: true, move };
  });
}

/**
 * Undoes the most recent 'set' move of `alias` not undone yet: the alias goes back to
 * that move's from_version. Repeated rollbacks walk further back.
 */
export async function rollbackAlias(knex: Knex, name: string, alias: string, options: AliasMoveOptions = {}): Promise<AliasChange> {
  assertName(name, 'model name');
  assertName(alias, 'alias');
  return inTransaction(knex, STORE, async (trx) => {
    const model = await lockModel(trx, name);
    const current = await currentVersion(trx, model.id, alias);
    if (current === undefined) throw await refNotFound(trx, name, { kind: 'alias', alias });
    const undo = await trx('model_alias_history as h')
      .select<{ id: number; from_version: number | null; to_version: number } | undefined>('h.id', 'h.from_version', 'h.to_version')
      .where({ 'h.model_id': model.id, 'h.alias': alias, 'h.kind': 'set' })
      .whereNotExists((q) => {
        q.select(trx.raw('1')).from('model_alias_history as r').whereRaw('r.undoes_id = h.id');
      })
      .orderBy('h.id', 'desc')
      .first();
    if (!undo) {
      throw new FtiError(FailureType.Conflict, `nothing to roll back: every move of ${name}@${alias} has been rolled back already (it points at version ${current})`, { model: name, alias });
    }
    if (undo.from_version === null) {
      throw new FtiError(
        FailureType.Conflict,
        `nothing to roll back: ${name}@${alias} was created pointing at version ${undo.to_version} and has no earlier version to go back to`,
        { model: name, alias },
      );
    }
    const target = undo.from_version;
    const exists = await trx('model_versions').where({ model_id: model.id, version: target }).first('id');
    if (!exists) {
      throw new FtiError(FailureType.Conflict, `cannot roll back ${name}@${alias} to version ${target}: that version has been deleted`, { model: name, alias, version: target });
    }
    const move = await recordMove(trx, { modelId: model.id, name, alias, kind: 'rollback', from: current, to: target, undoesId: undo.id, actor: options.actor, reason: options.reason });
    return { model: name, alias, kind: 'rollback', fromVersion: current, toVersion: target, changed: true, move };
  });
}

interface Move extends AliasMoveOptions {
  modelId: number;
  name: string;
  alias: string;
  kind: AliasMoveKind;
  from: number | null;
  to: number;
  undoesId: number | null;
}

/** Appends the history row, moves the pointer and announces the move; caller holds the model lock. */
async function recordMove(trx: Knex.Transaction, m: Move): Promise<AliasMove> {
  // clock_timestamp(), not now(): taken after the lock, so history times follow the order
  // of moves. Truncated to milliseconds so a JS Date holds it exactly and
  // aliasAt(move.at) includes the move itself.
  const [row] = await trx('model_alias_history')
    .insert({
      model_id: m.modelId,
      alias: m.alias,
      kind: m.kind,
      from_version: m.from,
      to_version: m.to,
      undoes_id: m.undoesId,
      actor: m.actor ?? null,
      reason: m.reason ?? null,
      at: trx.raw("date_trunc('milliseconds', clock_timestamp())"),
    })
    .returning<Array<Omit<AliasMoveRow, 'model_name'>>>(['id', 'alias', 'kind', 'from_version', 'to_version', 'undoes_id', 'actor', 'reason', 'at']);
  if (!row) throw new Error('insert into model_alias_history returned no row');
  await trx('model_aliases')
    .insert({ model_id: m.modelId, alias: m.alias, version: m.to, updated_at: row.at })
    .onConflict(['model_id', 'alias'])
    .merge(['version', 'updated_at']);
  await trx('models').where({ id: m.modelId }).update({ updated_at: row.at });
  // Delivered to listeners when (and only if) this transaction commits.
  await trx.raw(`select pg_notify(?, json_build_object('schema', current_schema(), 'model', ?::text, 'alias', ?::text, 'version', ?::int)::text)`, [
    ALIAS_CHANNEL,
    m.name,
    m.alias,
    m.to,
  ]);
  return toAliasMove({ ...row, model_name: m.name });
}

async function currentVersion(trx: Knex.Transaction, modelId: number, alias: string): Promise<number | undefined> {
  const row = await trx('model_aliases').select<{ version: number } | undefined>('version').where({ model_id: modelId, alias }).first();
  return row?.version;
}

export async function getAlias(knex: Knex, name: string, alias: string): Promise<ModelAlias> {
  assertName(name, 'model name');
  assertName(alias, 'alias');
  const row = (await aliasQuery(knex).where({ 'm.name': name, 'a.alias': alias }).first()) as ModelAliasRow | undefined;
  if (row) return toModelAlias(row);
  throw await refNotFound(knex, name, { kind: 'alias', alias });
}

export async function listAliases(knex: Knex, name: string): Promise<ModelAlias[]> {
  assertName(name, 'model name');
  const rows = (await aliasQuery(knex).where('m.name', name).orderBy('a.alias')) as ModelAliasRow[];
  if (rows.length === 0) await modelId(knex, name);
  return rows.map(toModelAlias);
}

/** Every move of the alias, oldest first; empty when it was never set. */
export async function aliasHistory(knex: Knex, name: string, alias: string): Promise<AliasMove[]> {
  assertName(name, 'model name');
  assertName(alias, 'alias');
  const id = await modelId(knex, name);
  const rows = (await historyQuery(knex).where({ 'h.model_id': id, 'h.alias': alias }).orderBy('h.id')) as AliasMoveRow[];
  return rows.map(toAliasMove);
}

/** The version the alias pointed at, at `time`; undefined when it did not exist yet. */
export async function aliasAt(knex: Knex, name: string, alias: string, time: Date): Promise<number | undefined> {
  assertName(name, 'model name');
  assertName(alias, 'alias');
  if (!(time instanceof Date) || Number.isNaN(time.getTime())) throw new FtiError(FailureType.InvalidInput, `aliasAt needs a valid Date, got ${String(time)}`);
  const id = await modelId(knex, name);
  const row = await knex('model_alias_history')
    .select<{ to_version: number } | undefined>('to_version')
    .where({ model_id: id, alias })
    .where('at', '<=', time)
    .orderBy('id', 'desc')
    .first();
  return row?.to_version;
}

/**
 * Whether `version` holds or ever held an alias (it is the target of a recorded move).
 * NotFound, saying what exists, when the model or the version does not exist.
 */
export async function versionHeldAlias(knex: Knex, name: string, version: number): Promise<boolean> {
  assertName(name, 'model name');
  assertVersionNumber(version);
  const row = await knex('model_versions as v')
    .join('models as m', 'm.id', 'v.model_id')
    .where({ 'm.name': name, 'v.version': version })
    .first<{ held: boolean } | undefined>(
      knex.raw('exists (select 1 from model_alias_history as h where h.model_id = v.model_id and h.to_version = v.version) as held'),
    );
  if (!row) throw await refNotFound(knex, name, { kind: 'version', version });
  return row.held;
}

function aliasQuery(knex: Knex): Knex.QueryBuilder {
  return knex('model_aliases as a').join('models as m', 'm.id', 'a.model_id').select('m.name as model_name', 'a.alias', 'a.version', 'a.updated_at');
}

function historyQuery(knex: Knex): Knex.QueryBuilder {
  return knex('model_alias_history as h').join('models as m', 'm.id', 'h.model_id').select('h.*', 'm.name as model_name');
}
