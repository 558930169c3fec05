/**
 * Fenced partition attempts, with real Postgres sessions. A retry of a partition whose
 * earlier attempt is still COPYing (a zombie: its worker paused, or its heartbeat timed
 * out) terminates the zombie's session, whose writes roll back: the commit holds the
 * retry's rows exactly once. A zombie that wakes after the commit writes nothing. A
 * cancelled attempt's COPY is cancelled in Postgres at once (here while it waits on a
 * lock), so the run's abort does not wait behind it and leaves no table or lease; an
 * attempt stalled on its source, which never hears a cancel, is ended by the abort.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup } from '../../features/definitions.ts';
import type { FeatureValue } from '../../features/schema.ts';
import { StagedRowWriter } from '../../features/staged-rows.ts';
import { FeatureStore, type FeatureGroupRecord } from '../../registry/feature-store/index.ts';
import { until } from '../helpers/serving.ts';
import { createTestDb, uniqueId, type TestDb } from '../helpers/services.ts';

const readings = defineFeatureGroup({
  name: 'fenced_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const RANGE = { rowStart: 0, rowEnd: 1000 };

/** The COPY of rows `from`..`to`-1 as ingest writes it (features, row number, available-at). */
function lines(from: number, to: number, value: (i: number) => number): Buffer[] {
  const writer = new StagedRowWriter(readings.columns);
  for (let i = from; i < to; i++) {
    const row: Record<string, FeatureValue> = { sensor: `s${i}`, at: new Date(Date.UTC(2024, 0, 1, 0, i)), value: value(i) };
    writer.row(readings.columns.map((c) => row[c.name] ?? null), i, row.at as Date);
  }
  return writer.end();
}

/** A source that yields the first half of its COPY's bytes, then stalls until released: an attempt stopped mid-COPY. */
function stalledSource(value: (i: number) => number) {
  let release!: () => void;
  let stalled!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const reachedStall = new Promise<void>((resolve) => (stalled = resolve));
  async function* chunks() {
    const bytes = Buffer.concat(lines(0, 10, value));
    const cut = Math.floor(bytes.length / 2);
    yield bytes.subarray(0, cut);
    stalled();
    await released;
    yield bytes.subarray(cut);
  }
  return { chunks: chunks(), reachedStall, release };
}

/** 'completed', or the error's message: an attempt's outcome, awaited later. */
const outcomeOf = (attempt: Promise<unknown>): Promise<string> =>
  attempt.then(
    () => 'completed',
    (err: unknown) => (err instanceof Error ? err.message : String(err)),
  );

describe('fenced partition attempts (real sessions)', () => {
  let db: TestDb;
  let store: FeatureStore;
  let group: FeatureGroupRecord;

  const stagedTables = async () =>
    ((await db.knex.raw(`select table_name from information_schema.tables where table_schema = current_schema() and table_name like 'fg_fenced_readings_v1__c%'`)) as { rows: Array<{ table_name: string }> }).rows.map((r) => r.table_name);

  beforeAll(async () => {
    db = await createTestDb('fenced');
    store = new FeatureStore({ knex: db.knex });
    group = await store.register(readings);
  });

  afterAll(async () => {
    await db?.close();
  });

  it('a retry ends a zombie attempt mid-COPY; the commit holds the retry rows exactly once, and a zombie waking later writes nothing', async () => {
    const commit = await store.beginCommit(group, { idempotencyKey: uniqueId('attempt') });
    const zombie = stalledSource((i) => i);
    const first = store.stagePartition(group, commit.id, { index: 0, range: RANGE }, undefined, (stage) => stage.copyRows(group, commit.id, zombie.chunks));
    const firstOutcome = outcomeOf(first);
    await zombie.reachedStall;

    // The retry: the same partition, other values, while the zombie's COPY is open.
    await store.stagePartition(group, commit.id, { index: 0, range: RANGE }, undefined, (stage) =>
      stage.copyRows(group, commit.id, (async function* () {
        yield* lines(0, 10, (i) => 100 + i);
      })()),
    );
    zombie.release();
    expect(await firstOutcome).toMatch(/terminat|connection|ECONNRESET/i);

    const outcome = await store.commit(group, { expectations: [], validation: 'strict' }, commit.id);
    expect(outcome.ok, JSON.stringify(outcome)).toBe(true);
    const rows = await store.read(group).toArray();
    expect(rows.map((r) => r.value)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));

    // A zombie that wakes after the commit finds it committed and writes nothing.
    const late = store.stagePartition(group, commit.id, { index: 0, range: RANGE }, undefined, (stage) =>
      stage.copyRows(group, commit.id, (async function* () {
        yield* lines(0, 10, () => -1);
      })()),
    );
    await expect(late).rejects.toThrow(/is committed: partition 0 of it is no longer written/);
    expect((await store.read(group).toArray()).map((r) => r.value)).toEqual(Array.from({ length: 10 }, (_, i) => 100 + i));
  });

  it('a cancelled attempt stops its COPY in Postgres at once, and the run is aborted without waiting behind it', async () => {
    const commit = await store.beginCommit(group, { idempotencyKey: uniqueId('attempt') });
    const table = `fg_fenced_readings_v1__c${commit.id}`;
    // The attempt blocks in Postgres: another session holds the commit's table.
    const holder = await db.knex.transaction();
    await holder.raw('lock table ?? in access exclusive mode', [table]);
    const cancel = new AbortController();
    const attempt = store.stagePartition(group, commit.id, { index: 0, range: RANGE }, cancel.signal, (stage) =>
      stage.copyRows(group, commit.id, (async function* () {
        yield* lines(0, 10, (i) => i);
      })(), cancel.signal),
    );
    const outcome = outcomeOf(attempt);
    await until(async () => ((await db.knex.raw(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and query like '%' || ? || '%'`, [table])) as { rows: Array<{ n: number }> }).rows[0]?.n ?? 0, (n) => n > 0, 10_000);

    const started = Date.now();
    cancel.abort();
    expect(await outcome).toMatch(/cancel/i);
    expect(Date.now() - started).toBeLessThan(5_000);
    await holder.rollback();
    await store.abort(group, commit.id, 'cancelled');
    expect(await stagedTables()).not.toContain(table);
    expect((await store.getCommit(commit.id)).status).toBe('failed');
    expect(((await db.knex.raw(`select count(*)::int as n from pg_locks where locktype = 'advisory'`)) as { rows: Array<{ n: number }> }).rows[0]?.n).toBe(0);
  });

  it('aborting a run ends an attempt stalled mid-COPY (one that never heard a cancel) instead of waiting behind it', async () => {
    const commit = await store.beginCommit(group, { idempotencyKey: uniqueId('attempt') });
    const stalled = stalledSource((i) => i);
    const attempt = store.stagePartition(group, commit.id, { index: 0, range: RANGE }, undefined, (stage) => stage.copyRows(group, commit.id, stalled.chunks));
    const outcome = outcomeOf(attempt);
    await stalled.reachedStall;
    const started = Date.now();
    await store.abort(group, commit.id, 'the workflow gave up');
    expect(Date.now() - started).toBeLessThan(5_000);
    stalled.release();
    expect(await outcome).toMatch(/terminat|connection|ECONNRESET/i);
    expect(await stagedTables()).not.toContain(`fg_fenced_readings_v1__c${commit.id}`);
    expect((await store.getCommit(commit.id)).status).toBe('failed');
    expect(((await db.knex.raw(`select count(*)::int as n from pg_locks where locktype = 'advisory'`)) as { rows: Array<{ n: number }> }).rows[0]?.n).toBe(0);
  });
});
