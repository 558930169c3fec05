/**
 * Transactions, and the one place where Postgres error codes become the project's
 * errors. Every store runs its writing methods through `inTransaction`, which
 * retries serialization failures and deadlocks and translates what is left.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Knex } from 'knex';
import { z } from 'zod';
import { FailureType, FtiError } from '../../core/errors.ts';

const UNIQUE_VIOLATION = '23505';
const FOREIGN_KEY_VIOLATION = '23503';
const RETRYABLE = new Set(['40001', '40P01']); // serialization_failure, deadlock_detected
const MAX_ATTEMPTS = 5;

/** Runs `fn` in a transaction, or inside `knex` when it already is one. */
export function transaction<T>(knex: Knex, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  if (knex.isTransaction) return fn(knex as Knex.Transaction);
  return knex.transaction(fn);
}

/**
 * Until the returned function is called, an abort of `signal` cancels the statement of
 * backend `pid` in Postgres (pg_cancel_backend, over another pooled connection): a
 * cancelled activity stops its SQL at once instead of running it to the end.
 */
export function cancelOnAbort(knex: Knex, pid: number, signal: AbortSignal | undefined): () => void {
  if (!signal) return () => {};
  const cancel = () => {
    void knex.raw('select pg_cancel_backend(?)', [pid]).catch(() => undefined);
  };
  signal.addEventListener('abort', cancel, { once: true });
  return () => signal.removeEventListener('abort', cancel);
}

/** Runs `work` on `trx`'s session, its statements cancelled when `signal` aborts (an aborted signal throws first). */
export async function cancelledWith<T>(knex: Knex, trx: Knex.Transaction, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (!signal) return work();
  signal.throwIfAborted();
  const { rows } = (await trx.raw('select pg_backend_pid() as pid')) as { rows: Array<{ pid: number }> };
  const release = cancelOnAbort(knex, rows[0]?.pid ?? 0, signal);
  try {
    return await work();
  } finally {
    release();
  }
}

/** Runs `work` in a transaction (a connection of its own, unless `knex` already is one), its statements cancelled when `signal` aborts. */
export function cancellableTransaction<T>(knex: Knex, signal: AbortSignal | undefined, work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return transaction(knex, (trx) => cancelledWith(knex, trx, signal, () => work(trx)));
}

/**
 * Runs `fn` in a transaction, retrying serialization failures and deadlocks with a
 * short jittered backoff, and translates Postgres errors (see translatePgError).
 * Inside a caller's transaction it runs once: only the owner of a transaction can
 * retry it. `store` names the store in error messages.
 */
export async function inTransaction<T>(knex: Knex, store: string, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await transaction(knex, fn);
    } catch (err) {
      if (!knex.isTransaction && attempt < MAX_ATTEMPTS && RETRYABLE.has(pgErrorCode(err) ?? '')) {
        await sleep(5 * 2 ** attempt * (0.5 + Math.random()));
        continue;
      }
      throw translatePgError(err, store, attempt);
    }
  }
}

/**
 * Runs `fn` under a savepoint of `trx`. Returns false, with the savepoint rolled
 * back and `trx` still usable, when it fails on a unique violation; any other
 * error propagates. For "try the fast way, fall back when keys collide".
 */
export async function unlessUniqueViolation(trx: Knex.Transaction, fn: (savepoint: Knex.Transaction) => Promise<void>): Promise<boolean> {
  const savepoint = await trx.transaction();
  try {
    await fn(savepoint);
    await savepoint.commit();
    return true;
  } catch (err) {
    await savepoint.rollback().catch(() => {});
    if (pgErrorCode(err) !== UNIQUE_VIOLATION) throw err;
    return false;
  }
}

/** Postgres error codes → the project's errors. FtiErrors and unknown errors pass through. */
export function translatePgError(err: unknown, store: string, attempts = 1): unknown {
  if (err instanceof FtiError) return err;
  const code = pgErrorCode(err);
  const detail = pgDetail(err);
  switch (code) {
    case UNIQUE_VIOLATION:
      return new FtiError(FailureType.Conflict, `${store}: already exists${detail ? ` (${detail})` : ''}`, { code, cause: String(err) });
    case FOREIGN_KEY_VIOLATION:
      return new FtiError(FailureType.Conflict, `${store}: still referenced${detail ? ` (${detail})` : ''}`, { code, cause: String(err) });
    case '40001':
    case '40P01':
      // A plain Error: transient, so an activity retries it.
      return new Error(`${store}: concurrent writers kept conflicting after ${attempts} attempts (${code}); try again`, { cause: err });
    default:
      return err;
  }
}

/** The SQLSTATE of a Postgres error, if `err` is one. */
export function pgErrorCode(err: unknown): string | undefined {
  const parsed = z.object({ code: z.string() }).safeParse(err);
  return parsed.success ? parsed.data.code : undefined;
}

/** A lock wait ran past the session's lock_timeout (55P03, lock_not_available). */
export function isLockNotAvailable(err: unknown): boolean {
  return pgErrorCode(err) === '55P03';
}

function pgDetail(err: unknown): string | undefined {
  const parsed = z.object({ detail: z.string() }).safeParse(err);
  return parsed.success ? parsed.data.detail : undefined;
}
