/**
 * How the model registry talks to Postgres: one transaction per method, a per-model
 * lock that serializes writers, retries of serialization failures and deadlocks, and
 * the one place where Postgres error codes become FtiErrors.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { z } from 'zod';
import { FailureType, FtiError } from '../core/errors.ts';
import { IDENTIFIER } from '../core/names.ts';
import { transaction } from './db.ts';
import { LATEST } from './model-types.ts';

const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected
const MAX_ATTEMPTS = 5;

/**
 * Runs `fn` in a transaction, retrying serialization failures and deadlocks with a
 * short jittered backoff. Inside a caller's transaction it runs once: only the owner
 * of a transaction can retry it.
 */
export async function inTransaction<T>(knex: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(knex, fn);
    } catch (err) {
      if (!knex.isTransaction && attempt < MAX_ATTEMPTS && RETRYABLE.has(pgCode(err) ?? '')) {
        await sleep(5 * 2 ** attempt * (0.5 + Math.random()));
        continue;
      }
      throw translatePgError(err, attempt);
    }
  }
}

/** Postgres error codes → the project's errors. FtiErrors and unknown errors pass through. */
export function translatePgError(err: unknown, attempts = 1): unknown {
  if (err instanceof FtiError) return err;
  const code = pgCode(err);
  const detail = pgDetail(err);
  switch (code) {
    case '23505':
      return new FtiError(FailureType.Conflict, `model registry: already exists${detail ? ` (${detail})` : ''}`, { code, cause: String(err) });
    case '23503':
      return new FtiError(FailureType.Conflict, `model registry: still referenced${detail ? ` (${detail})` : ''}`, { code, cause: String(err) });
    case '40001':
    case '40P01':
      // A plain Error: transient, so an activity retries it.
      return new Error(`model registry: concurrent writers kept conflicting after ${attempts} attempts (${code}); try again`, { cause: err });
    default:
      return err;
  }
}

function pgCode(err: unknown): string | undefined {
  const parsed = z.object({ code: z.string() }).safeParse(err);
  return parsed.success ? parsed.data.code : undefined;
}

function pgDetail(err: unknown): string | undefined {
  const parsed = z.object({ detail: z.string() }).safeParse(err);
  return parsed.success ? parsed.data.detail : undefined;
}

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

/** A failed zod parse as one InvalidInput naming every problem. */
export function invalid(what: string, issues: ReadonlyArray<{ path: PropertyKey[]; message: string }>): FtiError {
  const problems = issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
  return new FtiError(FailureType.InvalidInput, `invalid ${what}: ${problems}`, { issues: problems });
}

export function modelNotFound(name: string): FtiError {
  return new FtiError(FailureType.NotFound, `model '${name}' is not registered`, { model: name });
}
