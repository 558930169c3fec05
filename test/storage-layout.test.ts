/**
 * The offline store's layout: tables partitioned by event time (a group's
 * `partitionBy` range), the commit an ordinary column. Many small commits share their
 * range's partition instead of adding one each; reads and joins over a window touch
 * only the partitions of its ranges (Postgres' plan says which); a store of the
 * layout before (one partition per commit) is rebuilt in this one with every snapshot
 * unchanged.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stagedCopy } from '../features/staged-rows.ts';
import { defineFeatureGroup, type FeatureGroupDefinition } from '../features/definitions.ts';
import { defineFeatureView } from '../features/views.ts';
import { createKnex, raw } from '../registry/db/index.ts';
import { FeatureStore, latestViewSnapshot, pointInTimeSql, scannedTables, viewQuery, type FeatureGroupRecord } from '../registry/feature-store/index.ts';
import { commitRows as commitRowsTo, type Row } from './helpers/commits.ts';
import { createTestDb, uniqueId, type TestDb } from './helpers/services.ts';

const meters = defineFeatureGroup({
  name: 'meters',
  version: 1,
  entityKeys: ['meter'],
  eventTime: 'at',
  features: { meter: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
  partitionBy: 'month',
});
const bills = defineFeatureGroup({
  name: 'bills',
  version: 1,
  entityKeys: ['bill_id'],
  eventTime: 'at',
  features: { bill_id: 'int', at: 'timestamp', meter: 'string', paid: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'paid',
});
const gauges = defineFeatureGroup({
  name: 'gauges',
  version: 1,
  entityKeys: ['gauge'],
  eventTime: 'at',
  features: { gauge: 'string', at: 'timestamp', value: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
  partitionBy: 'month',
});
const view = defineFeatureView({ name: 'bill_view', version: 1, spine: bills, label: 'paid', joins: [{ group: meters, on: { meter: 'meter' }, ttl: '7d' }], features: ['meters.value'] });

const day = (month: number, d: number, h = 0) => new Date(Date.UTC(2024, month - 1, d, h));

describe('event-time partitions', () => {
  let db: TestDb;
  let store: FeatureStore;
  let meterGroup: FeatureGroupRecord;
  let billGroup: FeatureGroupRecord;
  const commits: number[] = [];

  const commitRows = (group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: Row[]) => commitRowsTo(store, group, def, rows);
  /** The group's tables in the schema, with whether each is a partition (and of what). */
  const tablesOf = async (prefix: string) =>
    (
      (await db.knex.raw(
        `select c.relname as name, coalesce(p.relname, '') as parent from pg_class c join pg_namespace n on n.oid = c.relnamespace
         left join pg_inherits i on i.inhrelid = c.oid left join pg_class p on p.oid = i.inhparent
         where n.nspname = current_schema() and c.relkind in ('r', 'p') and starts_with(c.relname, ?) order by 1`,
        [prefix],
      )) as { rows: Array<{ name: string; parent: string }> }
    ).rows;
  /** A table's BRIN indexes' definitions, and the columns Postgres has statistics for. */
  const timeIndexOf = async (table: string) => ({
    brin: ((await db.knex.raw(`select indexdef from pg_indexes where schemaname = current_schema() and tablename = ? and indexdef like '% USING brin %'`, [table])) as { rows: Array<{ indexdef: string }> }).rows.map((r) => r.indexdef.replace(/ ON \S+ /, ' ON … ')),
    statistics: ((await db.knex.raw(`select attname from pg_stats where schemaname = current_schema() and tablename = ? order by 1`, [table])) as { rows: Array<{ attname: string }> }).rows.map((r) => r.attname),
  });
  const snapshotAsOf = async (s: FeatureStore, commitId: number) =>
    (await s.read(meterGroup, { asOfCommit: commitId }).toArray()).map((r) => `${r.meter}@${(r.at as Date).toISOString()}=${r.value}`).sort();

  beforeAll(async () => {
    db = await createTestDb('storage');
    store = new FeatureStore({ knex: db.knex });
    meterGroup = await store.register(meters);
    billGroup = await store.register(bills);
  });

  afterAll(async () => {
    await db?.close();
  });

  it('a backfill fills one partition per month; 30 hourly commits add rows to their month, not partitions', async () => {
    commits.push(await commitRows(meterGroup, meters, [1, 2, 3].flatMap((month) => ['a', 'b'].map((meter, k) => ({ meter, at: day(month, 10 + k), value: month * 10 + k })))));
    for (let h = 0; h < 30; h++) commits.push(await commitRows(meterGroup, meters, [{ meter: 'a', at: day(3, 20, h % 24), value: 100 + h }].map((r, i) => ({ ...r, at: new Date((r.at as Date).getTime() + Math.floor(h / 24) * 86_400_000 + i) }))));
    // A correction of a February row: the old one moves to the history table.
    commits.push(await commitRows(meterGroup, meters, [{ meter: 'a', at: day(2, 10), value: -1 }]));

    expect(await tablesOf('fg_meters_v1')).toEqual([
      { name: 'fg_meters_v1', parent: '' },
      { name: 'fg_meters_v1__hist', parent: '' },
      { name: 'fg_meters_v1__p20240101', parent: 'fg_meters_v1' },
      { name: 'fg_meters_v1__p20240201', parent: 'fg_meters_v1' },
      { name: 'fg_meters_v1__p20240301', parent: 'fg_meters_v1' },
    ]);
    // Each new partition comes with a BRIN index on its event time and its statistics.
    for (const month of ['20240101', '20240201', '20240301']) {
      expect(await timeIndexOf(`fg_meters_v1__p${month}`)).toEqual({
        brin: [`CREATE INDEX fg_meters_v1__p${month}_time ON … USING brin (at) WITH (pages_per_range='32')`],
        statistics: expect.arrayContaining(['at', 'meter', 'value']),
      });
    }
    const now = await snapshotAsOf(store, commits.at(-1) as number);
    expect(now).toHaveLength(6 + 30);
    expect(now).toContain(`a@${day(2, 10).toISOString()}=-1`);
    expect(await snapshotAsOf(store, commits[0] as number)).toEqual([1, 2, 3].flatMap((m) => [`a@${day(m, 10).toISOString()}=${m * 10}`, `b@${day(m, 11).toISOString()}=${m * 10 + 1}`]).sort());
  });

  it('a windowed read and a point-in-time join scan only the partitions of their window', async () => {
    expect(await store.read(meterGroup, { start: day(2, 1), end: day(3, 1) }).scans()).toEqual(['fg_meters_v1__p20240201']);
    expect(await store.read(meterGroup, { start: day(3, 5), end: day(3, 6) }).scans()).toEqual(['fg_meters_v1__p20240301']);
    expect(await store.read(meterGroup).scans()).toEqual(['fg_meters_v1__p20240101', 'fg_meters_v1__p20240201', 'fg_meters_v1__p20240301']);
    // As of an earlier commit, rows since superseded come from the history table (and
    // feature_commits names the commits that came after the pinned one).
    expect(await store.read(meterGroup, { start: day(2, 1), end: day(3, 1), asOfCommit: commits[0] as number }).scans()).toEqual(['feature_commits', 'fg_meters_v1__hist', 'fg_meters_v1__p20240201']);

    await commitRows(billGroup, bills, [1, 2, 3].map((month) => ({ bill_id: month, at: day(month, 15), meter: 'b', paid: month % 2 === 0 })));
    const record = await store.registerView(view);
    const snapshot = await latestViewSnapshot(db.knex, record.definition);
    const join = pointInTimeSql({ ...viewQuery(record.definition, snapshot, { start: day(2, 1), end: day(3, 1), withLabel: true, strategy: 'window' }) });
    // Spine rows of February; meter rows before March 1st and no older than the ttl (7 days) before February 1st.
    expect(await scannedTables(db.knex, join)).toEqual(['feature_commits', 'fg_bills_v1__hist', 'fg_bills_v1__p20240201', 'fg_meters_v1__hist', 'fg_meters_v1__p20240101', 'fg_meters_v1__p20240201']);
    const rows = (await raw(db.knex, join)) as { rows: Array<Record<string, unknown>> };
    expect(rows.rows.map((r) => [r.bill_id, r.value])).toEqual([[2, 21]]);
  });

  it('a store of the layout before (one partition per commit) is rebuilt by event time, every snapshot unchanged', async () => {
    const before = await Promise.all(commits.map((c) => snapshotAsOf(store, c)));
    // The old layout, by hand: RANGE (_commit_id), one partition per commit.
    await db.knex.transaction(async (trx) => {
      await trx.raw('alter table fg_meters_v1 rename to fg_meters_v1__now');
      await trx.raw('create table fg_meters_v1 (like fg_meters_v1__now) partition by range (_commit_id)');
      const ids = ((await trx.raw('select distinct _commit_id as c from fg_meters_v1__now order by 1')) as { rows: Array<{ c: string }> }).rows.map((r) => Number(r.c));
      for (const c of ids) {
        await trx.raw(`create table fg_meters_v1__c${c} (like fg_meters_v1__now)`);
        await trx.raw(`insert into fg_meters_v1__c${c} select * from fg_meters_v1__now where _commit_id = ${c}`);
        await trx.raw(`alter table fg_meters_v1 attach partition fg_meters_v1__c${c} for values from (${c}) to (${c + 1})`);
      }
      await trx.raw('drop table fg_meters_v1__now');
    });
    expect((await tablesOf('fg_meters_v1__c')).length).toBeGreaterThan(3);

    // A process that has not seen the group yet (a new pool) upgrades it on first read.
    const knex = createKnex({ url: db.url, schema: db.schema, applicationName: 'fti-test-storage-upgrade' });
    try {
      const fresh = new FeatureStore({ knex });
      const after = await Promise.all(commits.map((c) => snapshotAsOf(fresh, c)));
      expect(after).toEqual(before);
      expect((await tablesOf('fg_meters_v1')).map((t) => t.name)).toEqual(['fg_meters_v1', 'fg_meters_v1__hist', 'fg_meters_v1__p20240101', 'fg_meters_v1__p20240201', 'fg_meters_v1__p20240301']);
      // And it commits into the new layout.
      store = fresh;
      const next = await commitRows(meterGroup, meters, [{ meter: 'c', at: day(4, 2), value: 7 }]);
      expect(await snapshotAsOf(fresh, next)).toContain(`c@${day(4, 2).toISOString()}=7`);
      expect((await tablesOf('fg_meters_v1__p')).map((t) => t.name)).toContain('fg_meters_v1__p20240401');
    } finally {
      await knex.destroy();
    }
  });

  it('compaction rewrites each partition written to since in key order, every snapshot unchanged; the newest range waits', async () => {
    store = new FeatureStore({ knex: db.knex });
    const part = (yyyymmdd: string) => `fg_meters_v1__p${yyyymmdd}`;
    /** A partition's rows in the order they lie on disk. */
    const physical = async (table: string) =>
      ((await db.knex.raw('select meter, at from ?? order by ctid', [table])) as { rows: Array<{ meter: string; at: Date }> }).rows.map((r) => `${r.meter}@${r.at.toISOString()}`);
    const inKeyOrder = (rows: string[]) => [...rows].sort();
    // March: the backfill's rows of a and b, then a's thirty hourly rows after b's.
    const march = await physical(part('20240301'));
    expect(march).not.toEqual(inKeyOrder(march));
    const before = await Promise.all(commits.map((c) => snapshotAsOf(store, c)));
    // January as a partition stored before partitions had a time index.
    await db.knex.raw('drop index ??', [`${part('20240101')}_time`]);

    const first = await store.compact(meterGroup);
    // The backfill wrote to January to March, the hourly commits to March, the correction to February.
    expect(first.compacted.map((p) => [p.partition, p.commits, p.rows])).toEqual([
      [part('20240101'), 1, 2],
      [part('20240201'), 2, 2],
      [part('20240301'), 31, 32],
    ]);
    expect(first.skipped).toEqual([{ partition: part('20240401'), reason: expect.stringContaining('newest range') }]);
    expect(await physical(part('20240301'))).toEqual(inKeyOrder(march));
    expect(await Promise.all(commits.map((c) => snapshotAsOf(store, c)))).toEqual(before);
    expect((await timeIndexOf(part('20240101'))).brin).toHaveLength(1);

    // Nothing written since: nothing to do. A commit into February: February again.
    expect((await store.compact(meterGroup)).compacted).toEqual([]);
    commits.push(await commitRows(meterGroup, meters, [{ meter: 'a', at: day(2, 3), value: 5 }]));
    const again = await store.compact(meterGroup, { includeOpen: true });
    expect(again.compacted.map((p) => p.partition)).toEqual([part('20240201'), part('20240401')]);
    expect(await physical(part('20240201'))).toEqual([`a@${day(2, 3).toISOString()}`, `a@${day(2, 10).toISOString()}`, `b@${day(2, 11).toISOString()}`]);
    expect(await snapshotAsOf(store, commits.at(-1) as number)).toContain(`a@${day(2, 3).toISOString()}=5`);
  });

  it("a run's commit stages into its window's ranges, and a range the store lacks is handed over whole, not copied", async () => {
    const group = await store.register(gauges);
    // March exists before the run.
    await commitRows(group, gauges, [{ gauge: 'a', at: day(3, 5), value: 1 }]);
    const attempt = { idempotencyKey: uniqueId('attempt'), windowStart: day(3, 1), windowEnd: day(6, 1) };
    const commit = await store.beginCommit(group, attempt);
    // A retry of the attempt finds the same table and partitions.
    expect((await store.beginCommit(group, attempt)).id).toBe(commit.id);
    const stage = `fg_gauges_v1__c${commit.id}`;
    const oids = async (parent: string) =>
      Object.fromEntries(
        ((await db.knex.raw(`select c.relname as name, c.oid::bigint as oid from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = ?::regclass order by 1`, [parent])) as { rows: Array<{ name: string; oid: string }> }).rows.map((r) => [r.name, r.oid]),
      );
    const staged = await oids(stage);
    // March has its partition already: its rows go to the default partition, to be copied.
    expect(Object.keys(staged)).toEqual([`${stage}_p20240401`, `${stage}_p20240501`, `${stage}_rest`]);
    const march = (await oids('fg_gauges_v1'))['fg_gauges_v1__p20240301'];

    // March (a range the store has), April twice, May, and June (outside the window: the default partition).
    const rows: Row[] = [
      { gauge: 'b', at: day(3, 20), value: 2 },
      { gauge: 'a', at: day(4, 2), value: 3 },
      { gauge: 'b', at: day(4, 9), value: 4 },
      { gauge: 'a', at: day(5, 31, 23), value: 5 },
      { gauge: 'a', at: day(6, 3), value: 6 },
    ];
    await store.copyRows(group, commit.id, stagedCopy(gauges.columns, rows.map((row, i) => ({ values: gauges.columns.map((c) => row[c.name] ?? null), rowNumber: i, availableAt: row.at as Date }))));
    const outcome = await store.commit(group, { expectations: [], validation: 'strict' }, commit.id);
    expect(outcome.ok, JSON.stringify(outcome)).toBe(true);

    const offline = await oids('fg_gauges_v1');
    expect(Object.keys(offline)).toEqual(['fg_gauges_v1__p20240301', 'fg_gauges_v1__p20240401', 'fg_gauges_v1__p20240501', 'fg_gauges_v1__p20240601']);
    // April and May are the very tables the rows were staged in; March kept its table, and its row and June's were copied.
    expect(offline['fg_gauges_v1__p20240401']).toBe(staged[`${stage}_p20240401`]);
    expect(offline['fg_gauges_v1__p20240501']).toBe(staged[`${stage}_p20240501`]);
    expect(offline['fg_gauges_v1__p20240301']).toBe(march);
    expect(Object.values(staged)).not.toContain(offline['fg_gauges_v1__p20240601']);
    expect((await tablesOf(stage)).length).toBe(0);
    // A handed-over range looks like any other: its range checked, its keys unique, its times indexed.
    for (const month of ['20240401', '20240501', '20240601']) {
      const table = `fg_gauges_v1__p${month}`;
      const constraints = (await db.knex.raw(`select conname from pg_constraint where conrelid = ?::regclass and contype = 'c' and conname = ?`, [table, `${table}_range`])) as { rows: unknown[] };
      expect(constraints.rows, table).toHaveLength(1);
      const index = (await db.knex.raw(`select c.relname as name, i.indisunique as unique from pg_index i join pg_class c on c.oid = i.indexrelid where i.indrelid = ?::regclass order by 1`, [table])) as { rows: Array<{ name: string; unique: boolean }> };
      expect(index.rows, table).toEqual([
        { name: `${table}_key`, unique: true },
        { name: `${table}_time`, unique: false },
      ]);
    }
    const read = (await store.read(group).toArray()).map((r) => `${r.gauge}@${(r.at as Date).toISOString()}=${r.value}`);
    expect(read.sort()).toEqual([{ gauge: 'a', at: day(3, 5), value: 1 }, ...rows].map((r) => `${r.gauge}@${(r.at as Date).toISOString()}=${r.value}`).sort());
    expect(await store.read(group, { start: day(4, 1), end: day(5, 1) }).scans()).toEqual(['fg_gauges_v1__p20240401']);

    // A run whose window opens no range (an hourly run into its month) stages into a plain table.
    const hourly = await store.beginCommit(group, { idempotencyKey: uniqueId('attempt'), windowStart: day(5, 2, 10), windowEnd: day(5, 2, 11) });
    const kind = (await db.knex.raw(`select relkind as kind from pg_class where oid = ?::regclass`, [`fg_gauges_v1__c${hourly.id}`])) as { rows: Array<{ kind: string }> };
    expect(kind.rows).toEqual([{ kind: 'r' }]);
  });
});
