/**
 * HeldConnections (registry/db/held-connections.ts), the online lookup's connections,
 * on a real Postgres: a caller's connection is kept between its calls (the same
 * backend answers), never one whose call failed or that Postgres ended
 * (pg_terminate_backend), and all are given back on close, so the pool can be destroyed.
 */
import type { Knex } from 'knex';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createKnex, HeldConnections } from '../registry/db/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

/** What knex's pool (tarn) says of its connections. */
interface PoolCounts {
  numUsed(): number;
}

describe('held connections', () => {
  let db: TestDb;
  let admin: Knex;
  let knex: Knex;

  beforeAll(async () => {
    db = await createTestDb('held_connections');
    admin = createKnex({ url: inject('adminDatabaseUrl'), schema: db.schema, poolMax: 1, applicationName: 'fti-test-admin-held-connections' });
  });
  afterAll(async () => {
    await admin?.destroy();
    await db?.close();
  });
  // Each test its own pool of two; destroying it waits for every connection lent, so a connection never given back fails the test by its timeout.
  const pool = () => (knex = createKnex({ url: db.url, schema: db.schema, poolMax: 2, applicationName: 'fti-test-held-connections' }));
  afterEach(async () => {
    await knex?.destroy();
  });

  const lent = () => (knex.client as { pool: PoolCounts }).pool.numUsed();
  const backend = async (client: pg.PoolClient): Promise<number> => (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]?.pid as number;
  const slowBackend = async (client: pg.PoolClient): Promise<number> => {
    const pid = await backend(client);
    await new Promise((r) => setTimeout(r, 50));
    return pid;
  };

  it('keeps up to `keep` connections between calls, borrows beyond them, and gives them back on close', async () => {
    pool();
    const held = new HeldConnections(knex, 1);
    const first = await held.use(backend);
    expect(lent()).toBe(1);
    expect(await held.use(backend)).toBe(first);
    // Two at once: one runs on the held connection, the other borrows one and gives it back to the pool.
    const both = await Promise.all([held.use(slowBackend), held.use(slowBackend)]);
    expect(both).toContain(first);
    expect(new Set(both).size).toBe(2);
    expect(lent()).toBe(1);
    // The one kept is whichever came back first.
    const kept = await held.use(backend);
    expect(both).toContain(kept);
    expect(await held.use(backend)).toBe(kept);

    await held.close();
    expect(lent()).toBe(0);
    // Closed: each call borrows from the pool and gives back.
    await held.use(backend);
    expect(lent()).toBe(0);
  });

  it('keeps none with keep 0: every call borrows from the pool', async () => {
    pool();
    const held = new HeldConnections(knex, 0);
    await held.use(backend);
    expect(lent()).toBe(0);
  });

  it('gives a connection whose call failed back to the pool', async () => {
    pool();
    const held = new HeldConnections(knex, 1);
    await held.use(backend);
    await expect(held.use((client) => client.query('select 1/0'))).rejects.toThrow(/division by zero/);
    expect(lent()).toBe(0);
  });

  it('never hands out a connection Postgres ended: the next call runs on a new backend', async () => {
    pool();
    const held = new HeldConnections(knex, 1);
    const first = await held.use(backend);
    const ended = (await admin.raw('select pg_terminate_backend(?) as ok', [first])) as { rows: Array<{ ok: boolean }> };
    expect(ended.rows[0]?.ok).toBe(true);
    // The backend is gone, and its socket's close has reached this process.
    for (let i = 0; i < 100; i++) {
      const { rows } = (await admin.raw('select count(*)::int as n from pg_stat_activity where pid = ?', [first])) as { rows: Array<{ n: number }> };
      if (rows[0]?.n === 0) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 200));
    const next = await held.use(backend);
    expect(next).not.toBe(first);
    expect(await held.use(backend)).toBe(next);
    await held.close();
  });
});
