/**
 * The model registry's guards: name and version checks, and the per-model row lock
 * that serializes every writer of a model's versions and aliases.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { IDENTIFIER } from '../../core/names.ts';
import { LATEST } from './types.ts';

/** Names the store in the errors translated from Postgres. */
export const STORE = 'model registry';

/** Model and alias names are allow-listed identifiers; a bad one is InvalidInput. */
export function assertName(value: unknown, what: 'model name' | 'alias'): string {
  if (typeof value !== 'string' || !IDENTIFIER.test(value)) {
    throw new FtiError(FailureType.InvalidInput, `${what} must match ${IDENTIFIER.source} (lower-case letter first, then lower-case letters, digits or _), got ${JSON.stringify(value)}`);
  }
  if (what === 'alias' && value === LATEST) {
    throw new FtiError(FailureType.InvalidInput, `'${LATEST}' is reserved (it always means the highest version) and cannot be an alias`);
  }
  return value;
}

export function assertVersionNumber(value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new FtiError(FailureType.InvalidInput, `a model version is a positive integer, got ${JSON.stringify(value)}`);
  }
  return value;
}

export interface LockedModel {
  id: number;
  lastVersion: number;
}

/**
 * Locks the model's row until the transaction ends. Every writer of a model's
 * versions and aliases takes this lock first, so they run one at a time per model.
 * FOR NO KEY UPDATE: conflicts with other writers, not with the FK checks of inserts.
 */
export async function lockModel(trx: Knex.Transaction, name: string, { create = false } = {}): Promise<LockedModel> {
  const select = () => trx('models').select<{ id: number; last_version: number } | undefined>('id', 'last_version').where({ name }).forNoKeyUpdate().first();
  let row = await select();
  if (!row && create) {
    // A concurrent insert of the same name waits for ours to commit, then does nothing.
    await trx('models').insert({ name }).onConflict('name').ignore();
    row = await select();
  }
  if (!row) throw modelNotFound(name);
  // Taken after the lock was granted, so last_version is the latest committed value.
  return { id: row.id, lastVersion: row.last_version };
}

/** The model's id, or undefined when no model has the name: the one "does this model exist". */
export async function findModelId(knex: Knex, name: string): Promise<number | undefined> {
  const row = await knex('models').select<{ id: number } | undefined>('id').where({ name }).first();
  return row?.id;
}

/** The model's id; NotFound when no model has the name. */
export async function modelId(knex: Knex, name: string): Promise<number> {
  const id = await findModelId(knex, name);
  if (id === undefined) throw modelNotFound(name);
  return id;
}

export function modelNotFound(name: string): FtiError {
  return new FtiError(FailureType.NotFound, `model '${name}' is not registered`, { model: name });
}
