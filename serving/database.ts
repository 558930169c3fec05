/**
 * The prediction server's database pool: every statement it runs is bounded by a
 * statement timeout, so a slow or blocked lookup (a lock held by a long DDL, an
 * overloaded database) is cancelled by Postgres and answered 503 statement_timeout
 * instead of holding a pool connection and a request open.
 *
 * The timeout travels in the connection string, which node-postgres sends as the
 * `statement_timeout` startup parameter of every connection it opens: it holds
 * whichever way (and as whichever role) the pool is created, with no per-query SET.
 */

/** Default statement timeout of the server's pool (FTI_SERVING_STATEMENT_TIMEOUT_MS). */
export const DEFAULT_STATEMENT_TIMEOUT_MS = 2_000;

/** `url` with `statement_timeout=<ms>` (replacing one already there); 0 turns the timeout off. */
export function withStatementTimeout(url: string, ms: number): string {
  if (!Number.isInteger(ms) || ms < 0) throw new Error(`a statement timeout is a whole number of milliseconds (0: none), got ${String(ms)}`);
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  const query = base.indexOf('?');
  const path = query < 0 ? base : base.slice(0, query);
  const params = (query < 0 ? [] : base.slice(query + 1).split('&')).filter((p) => p !== '' && !/^statement_timeout(=|$)/.test(p));
  return `${path}?${[...params, `statement_timeout=${ms}`].join('&')}`;
}
