/**
 * Pool connections a hot caller keeps between its calls: the prediction server's
 * online lookup, which runs one short statement per request. Taking a connection from
 * knex's pool for each is the lookup's largest cost after the round trip itself: tarn
 * queues a pending acquire with its own timeout and promises every time (a tenth of
 * what a request allocates, so of the collections that pause it). Here a call takes an
 * idle held connection when there is one, and gives it back to the holder, which keeps
 * up to `keep` of them; beyond that, or once closed, connections go back to the pool.
 *
 * A connection that failed a call, or that knex has marked as lost (its socket closed:
 * a restarted server), goes back to the pool, whose validation then drops it, so a
 * held connection is never one the pool would not hand out. `close` returns the idle
 * ones, and must come before the pool is destroyed (knex waits for every connection
 * it lent).
 */
import type { Knex } from 'knex';
import type pg from 'pg';

/** knex's mark on a pg connection it has seen fail or end (dialects/postgres). */
type KnexConnection = pg.PoolClient & { __knex__disposed?: unknown };

export class HeldConnections {
  private readonly idle: KnexConnection[] = [];
  private closed = false;

  constructor(
    private readonly knex: Knex,
    private readonly keep: number,
  ) {}

  /** Runs `work` on a held connection (or one from the pool), then keeps it for the next call. */
  async use<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = this.take() ?? ((await this.knex.client.acquireConnection()) as KnexConnection);
    let healthy = false;
    try {
      const result = await work(client);
      healthy = true;
      return result;
    } finally {
      if (healthy && !this.closed && this.idle.length < this.keep && !client.__knex__disposed) this.idle.push(client);
      else await this.knex.client.releaseConnection(client);
    }
  }

  /** Gives the idle connections back to the pool; later calls borrow from the pool each time. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.idle.splice(0).map((client) => this.knex.client.releaseConnection(client)));
  }

  /** An idle held connection still usable; lost ones go back to the pool to be dropped there. */
  private take(): KnexConnection | undefined {
    for (let client = this.idle.pop(); client; client = this.idle.pop()) {
      if (!client.__knex__disposed) return client;
      void this.knex.client.releaseConnection(client);
    }
    return undefined;
  }
}
