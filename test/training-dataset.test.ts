import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView } from '../features/views.ts';
import { FeatureStore, latestViewSnapshot, pointInTimeColumns, pointInTimeSql, streamPointInTime, viewQuery } from '../registry/feature-store/index.ts';
import { createKnex, id, raw, sql } from '../registry/db/index.ts';
import { packPasses, shuffleKey, trainMoments, TrainingStore } from '../registry/training/index.ts';
import { combineMoments, quantilesOf, type NumericStats } from '../ml/stats.ts';
import { featurePipeline } from '../workflows/index.ts';
import { SplitReader } from '../activities/split-reader.ts';
import { featureSpecs, splitBatches, trainOnDataset } from '../activities/training-run.ts';
import { loadBackend } from '../ml/backend.ts';
import { MlpParamsSchema } from '../ml/model.ts';
import { FailureType } from '../core/errors.ts';
import type { Batch } from '../ml/batches.ts';
import { EpochCache } from '../ml/epoch-cache.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import type { Split } from '../registry/training/index.ts';
import { scratchFiles } from './helpers/files.ts';
import { events, fraudView as view, scores } from './helpers/fraud.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const { dir, ndjson } = scratchFiles('datasets');

// The fraud example (helpers/fraud.ts): labelled events (the spine) and a score that
// jumps to 999 one second after each event.

// A second joined group with a text feature: two joins, and the text path of the set-based plan.
const tiers = defineFeatureGroup({
  name: 'tiers',
  version: 1,
  entityKeys: ['user_id'],
  eventTime: 'at',
  features: { user_id: 'string', at: 'timestamp', tier: 'string', level: 'int' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const twoJoins = defineFeatureView({
  name: 'fraud_view',
  version: 2,
  spine: events,
  label: 'fraud',
  joins: [
    { group: scores, on: { user_id: 'user_id' } },
    { group: tiers, on: { user_id: 'user_id' } },
  ],
  features: ['events.amount', 'scores.score', 'tiers.tier', 'tiers.level'],
});
// The join key is one of the spine's features too: the stream plan reads the key from that feature's column.
const keyedByFeature = defineFeatureView({
  name: 'fraud_view_keyed_by_feature',
  version: 1,
  spine: events,
  label: 'fraud',
  joins: [
    { group: scores, on: { user_id: 'user_id' } },
    { group: tiers, on: { user_id: 'user_id' } },
  ],
  features: [{ feature: 'events.user_id', encoding: 'one_hot' }, 'events.amount', 'scores.score', 'tiers.tier'],
});
// The spine's amount in quantile bins: its edges come from the train split in SQL.
const binned = defineFeatureView({
  name: 'fraud_view_bins',
  version: 1,
  spine: events,
  label: 'fraud',
  joins: [{ group: scores, on: { user_id: 'user_id' } }],
  features: [{ feature: 'events.amount', encoding: 'bins', bins: 4 }, 'scores.score'],
});
const project = defineProject({ featureGroups: [events, scores, tiers], featureViews: [view, twoJoins] });

const day = (h: number, m = 0, s = 0) => new Date(Date.UTC(2024, 0, 1, h, m, s)).toISOString();

describe('training datasets: the point-in-time join', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;

  beforeAll(async () => {
    db = await createTestDb('datasets');
    temporal = await createTestTemporal('datasets');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, dataRoots: [dir] });
    const run = (featureGroup: string, file: string) =>
      temporal.client.workflow.execute(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId('fp'), args: [{ featureGroup, source: { kind: 'ndjson', path: file } }] });
    const spine = [];
    const scoreRows = [];
    for (let i = 0; i < 20; i++) {
      const at = day(1 + i);
      spine.push({ event_id: i, at, user_id: 'u1', amount: i, fraud: i % 3 === 0 });
      // A value at exactly the event time and one a second later: both are the future for this event.
      scoreRows.push({ user_id: 'u1', at, score: 999 }, { user_id: 'u1', at: day(1 + i, 0, 1), score: 999 });
      // The value the event may see: written 30 minutes earlier.
      scoreRows.push({ user_id: 'u1', at: day(i, 30), score: i });
    }
    // A user whose scores only start after their event: no earlier feature at all.
    spine.push({ event_id: 100, at: day(5, 10), user_id: 'u2', amount: 1, fraud: false });
    scoreRows.push({ user_id: 'u2', at: day(5, 11), score: 999 });
    // An event with no user: its join key is null, so it joins nothing, and stays (null features), as in a left join.
    spine.push({ event_id: 101, at: day(6, 10), user_id: null, amount: 2, fraud: true });
    await run('events', ndjson('events.ndjson', spine));
    await run('scores', ndjson('scores.ndjson', scoreRows));
    await run('tiers', ndjson('tiers.ndjson', [
      { user_id: 'u1', at: day(3, 30), tier: 'silver', level: 2 },
      { user_id: 'u1', at: day(10, 30), tier: 'gold', level: 3 },
    ]));
  });

  afterAll(async () => {
    await worker?.stop();
    await temporal?.close();
    await db?.close();
  });

  const allRows = async (strategy: 'window' | 'lateral' | 'stream', definition = view, columns = ['event_id', 'at', 'amount', 'score', 'fraud', '_split']) => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(definition);
    const dataset = await new TrainingStore({ knex: db.knex }).createDataset(record, { idempotencyKey: uniqueId(strategy), strategy });
    const rows: Array<Record<string, unknown>> = [];
    for (const split of ['train', 'validation', 'test'] as const) {
      for await (const batch of new TrainingStore({ knex: db.knex }).streamSplit(dataset, split, columns)) rows.push(...batch);
    }
    // The order a trainer reads (each split by the shuffle key), before the rows are sorted for comparing.
    const order = rows.map((r) => Number(r.event_id));
    return { dataset, order, rows: rows.sort((a, b) => Number(a.event_id) - Number(b.event_id)) };
  };

  it('never contains a value written at or after the label event; rows with no earlier value get null', async () => {
    const { rows, dataset } = await allRows('window');
    expect(rows).toHaveLength(22);
    expect(rows.some((r) => r.score === 999)).toBe(false);
    for (const r of rows.filter((x) => Number(x.event_id) < 100)) expect(r.score).toBe(Number(r.event_id));
    expect(rows.find((r) => r.event_id === 100)?.score).toBeNull();
    expect(dataset.rowCounts.train + dataset.rowCounts.validation + dataset.rowCounts.test).toBe(22);
    expect(rows.find((r) => r.event_id === 101)).toMatchObject({ amount: 2, score: null });
    // Splits follow time: every train row is earlier than every test row.
    const maxTrain = Math.max(...rows.filter((r) => r._split === 'train').map((r) => (r.at as Date).getTime()));
    const minTest = Math.min(...rows.filter((r) => r._split === 'test').map((r) => (r.at as Date).getTime()));
    expect(maxTrain).toBeLessThan(minTest);
    // Statistics of the train split fit the encoding.
    expect(dataset.statistics.amount).toMatchObject({ count: dataset.rowCounts.train });
  });

  it('the stream plan computes the shuffle key in Node (shuffle-key.ts): the values Postgres computes for the SQL plans', async () => {
    await new FeatureStore({ knex: db.knex }).registerView(view);
    const snapshot = await latestViewSnapshot(db.knex, view);
    const types = new Map(pointInTimeColumns(viewQuery(view, snapshot, { withLabel: true, strategy: 'window' })).map((c) => [c.name, c.pgType]));
    expect(shuffleKey(view, types, { dateStyle: 'ISO, MDY', encoding: 'UTF8' }).inNode?.columns).toEqual(['event_id', 'at']);
    // A server that prints dates another way, or stores text in another encoding, computes it itself.
    expect(shuffleKey(view, types, { dateStyle: 'SQL, DMY', encoding: 'UTF8' }).inNode).toBeUndefined();
    expect(shuffleKey(view, types, { dateStyle: 'ISO, MDY', encoding: 'LATIN1' }).inNode).toBeUndefined();
    const window = await allRows('window', view, ['event_id', '_shuffle']);
    const stream = await allRows('stream', view, ['event_id', '_shuffle']);
    expect(stream.rows).toEqual(window.rows);
    expect(new Set(stream.rows.map((r) => r._shuffle)).size).toBeGreaterThan(stream.rows.length / 2);
  });

  it('the set-based plan, the per-row LATERAL plan and the stream plan produce the same rows', async () => {
    const window = await allRows('window');
    const lateral = await allRows('lateral');
    const stream = await allRows('stream');
    expect(lateral.rows).toEqual(window.rows);
    expect(stream.rows).toEqual(window.rows);
    // Stored in the same order: the stream plan reads its chunks' spines together, by slices of time, and sorts each chunk itself.
    expect(stream.order).toEqual(window.order);
    expect(lateral.order).toEqual(window.order);
    expect(stream.dataset.statistics).toEqual(window.dataset.statistics);
    // Every plan's chunks carry their partition's constraint, so attaching them to the dataset's table proved it without scanning their rows.
    for (const { dataset } of [window, lateral, stream]) {
      const checks = (await db.knex.raw(
        `select c.relname as part, pg_get_constraintdef(k.oid) as def from pg_inherits i join pg_class c on c.oid = i.inhrelid join pg_constraint k on k.conrelid = c.oid and k.contype = 'c'
         where i.inhparent = to_regclass(?) order by c.relname`,
        [dataset.tableName],
      )) as { rows: Array<{ part: string; def: string }> };
      expect(checks.rows.length).toBeGreaterThan(0);
      for (const c of checks.rows) expect(c.def).toBe(`CHECK (((_chunk IS NOT NULL) AND (_chunk = ${c.part.slice(c.part.lastIndexOf('_') + 1)})))`);
    }
  });

  it('joins two groups, text features included, and both plans agree', async () => {
    const columns = ['event_id', 'at', 'amount', 'score', 'tier', 'level', 'fraud'];
    const window = await allRows('window', twoJoins, columns);
    const lateral = await allRows('lateral', twoJoins, columns);
    const stream = await allRows('stream', twoJoins, columns);
    expect(lateral.rows).toEqual(window.rows);
    expect(stream.rows).toEqual(window.rows);
    expect(stream.order).toEqual(window.order);
    for (const r of window.rows.filter((x) => Number(x.event_id) < 100)) {
      const hour = Number(r.event_id) + 1;
      expect(r.score).toBe(Number(r.event_id));
      expect([r.tier, r.level]).toEqual(hour >= 11 ? ['gold', 3] : hour >= 4 ? ['silver', 2] : [null, null]);
    }
  });

  it("stores a snapshot in the same order whatever the session's TimeZone", async () => {
    // The shuffle key hashes each row's event time as text: a timestamptz prints in the session's zone.
    const zoned = createKnex({ url: `${db.url}${db.url.includes('?') ? '&' : '?'}options=${encodeURIComponent('-c TimeZone=America/New_York')}`, schema: db.schema, poolMax: 4 });
    try {
      const zones = await Promise.all([db.knex, zoned].map(async (k) => ((await k.raw('show timezone')) as { rows: Array<{ TimeZone: string }> }).rows[0]?.TimeZone));
      expect(zones[1]).toBe('America/New_York');
      expect(zones[0]).not.toBe(zones[1]);
      const orders = [];
      for (const knex of [db.knex, zoned]) {
        const store = new TrainingStore({ knex });
        const dataset = await store.createDataset(await new FeatureStore({ knex }).registerView(view), { idempotencyKey: uniqueId('zone') });
        const order: unknown[] = [];
        for (const split of ['train', 'validation', 'test'] as const) {
          for await (const batch of store.streamSplit(dataset, split, ['event_id', '_shuffle'])) order.push(...batch.map((r) => [r.event_id, r._shuffle]));
        }
        orders.push(order);
      }
      expect(orders[0]).toHaveLength(22);
      expect(orders[1]).toEqual(orders[0]);
    } finally {
      await zoned.destroy();
    }
  });

  it('a join keyed by a column the spine also gives as a feature: the plans agree', async () => {
    const columns = ['event_id', 'at', 'user_id', 'amount', 'score', 'tier', 'fraud'];
    const window = await allRows('window', keyedByFeature, columns);
    const stream = await allRows('stream', keyedByFeature, columns);
    expect(stream.rows).toEqual(window.rows);
    expect(stream.dataset.statistics).toEqual(window.dataset.statistics);
    // Every earlier event's score joined: the key was read right.
    expect(window.rows.filter((r) => Number(r.event_id) < 100).every((r) => r.score === Number(r.event_id))).toBe(true);
    expect(window.rows.find((r) => r.event_id === 100)).toMatchObject({ user_id: 'u2', score: null });
  });

  it('the stream plan writes a chunk in the order asked, sorted in Node as ORDER BY would: by an integer key (negative, null last), ties by spine columns', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const snapshot = await latestViewSnapshot(db.knex, record.definition);
    const q = viewQuery(record.definition, snapshot, { withLabel: true, strategy: 'window' });
    const storedBy = (key: ReturnType<typeof sql>) => {
      const table = `pit_order_${uniqueId('t').replace(/\W/g, '')}`.toLowerCase();
      return db.knex.transaction(async (trx) => {
        await raw(trx, sql`create temporary table ${id(table)} on commit drop as select q.*, ${key} as _key from (${pointInTimeSql(q)}) q with no data`);
        await streamPointInTime(db.knex, q, [{ index: 0, writer: trx, table, extra: [{ expr: key, as: '_key' }] }], { count: 1, order: { key: '_key', then: ['fraud', 'event_id'] } });
        const asStored = (await trx.raw('select event_id from ??', [table])).rows as Array<{ event_id: number }>;
        const sorted = (await trx.raw('select event_id from ?? order by _key, fraud, event_id', [table])).rows as Array<{ event_id: number }>;
        return { asStored: asStored.map((r) => Number(r.event_id)), sorted: sorted.map((r) => Number(r.event_id)) };
      });
    };
    // Keys spread over the whole int range (rows sorted across many buckets).
    const hashed = await storedBy(sql`hashtext(event_id::text || 'x')`);
    expect(hashed.asStored).toHaveLength(22);
    expect(hashed.asStored).toEqual(hashed.sorted);
    // Four keys (-2 to 1) and a null one; within a key, by fraud then event id: not the order Postgres reads the spine in.
    const stored = await storedBy(sql`(case when event_id = 100 then null else event_id % 4 - 2 end)::int`);
    expect(stored.asStored).toHaveLength(22);
    expect(stored.asStored).toEqual(stored.sorted);
    expect(stored.asStored.at(-1)).toBe(100);
    expect(stored.asStored).not.toEqual([...stored.asStored].sort((a, b) => a - b));
  });

  it('is stored as one partition per chunk of the join, each in shuffled order, and a split streams as their merge', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const training = new TrainingStore({ knex: db.knex });
    const dataset = await training.createDataset(record, { idempotencyKey: uniqueId('chunks'), chunks: 3 });
    const parts = (await db.knex.raw(`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass(?) order by 1`, [dataset.tableName])).rows as Array<{ name: string }>;
    expect(parts.map((p) => p.name)).toEqual([0, 1, 2].map((i) => `${dataset.tableName}_${i}`));
    for (const { name } of parts) {
      const stored = (await db.knex.raw(`select _split, _shuffle from ??`, [name])).rows as Array<{ _split: string; _shuffle: number }>;
      expect(stored.map((r) => r._shuffle)).toEqual(stored.map((r) => r._shuffle).sort((a, b) => a - b));
    }
    // Read through a pool of one connection: the partitions' cursors share it.
    const single = createKnex({ url: db.url, schema: db.schema, poolMax: 1, applicationName: 'fti-test-one-connection' });
    const streamed: Array<Record<string, unknown>> = [];
    try {
      for await (const batch of new TrainingStore({ knex: single }).streamSplit(dataset, 'train', ['event_id', '_shuffle'], 2)) streamed.push(...batch);
      // Given back: a second read on the same single connection works too.
      let again = 0;
      for await (const batch of new TrainingStore({ knex: single }).streamSplit(dataset, 'train', ['event_id'], 1)) again += batch.length;
      expect(again).toBe(streamed.length);
    } finally {
      await single.destroy();
    }
    const keys = streamed.map((r) => Number(r._shuffle));
    expect(keys).toEqual([...keys].sort((a, b) => a - b));
    const inTable = (await db.knex.raw(`select event_id from ?? where _split = 'train' order by event_id`, [dataset.tableName])).rows as Array<{ event_id: number }>;
    expect(streamed.map((r) => Number(r.event_id)).sort((a, b) => a - b)).toEqual(inTable.map((r) => Number(r.event_id)));
    expect(inTable.length).toBe(dataset.rowCounts.train);
    // No chunk table of the build is left behind.
    expect((await db.knex.raw(`select count(*)::int as n from pg_tables where schemaname = current_schema() and tablename like 'td\\_joining\\_%'`)).rows[0].n).toBe(0);
  });

  it('packs a stream build\'s passes by the chunks\' real sizes, and many small chunks give the same rows', async () => {
    // First fit by decreasing size: at most 2 chunks and 6 rows a pass; a chunk bigger than that alone; an empty chunk anywhere.
    expect(packPasses([0, 1, 2, 3, 4, 5], new Map([[0, 5], [1, 1], [2, 3], [3, 2], [4, 9]]), 2, 6)).toEqual([[4], [0, 1], [2, 3], [5]]);
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const training = new TrainingStore({ knex: db.knex });
    const small = await training.createDataset(record, { idempotencyKey: uniqueId('small-chunks'), maxChunkRows: 3 });
    const parts = (await db.knex.raw(`select count(*)::int as n from pg_inherits where inhparent = to_regclass(?)`, [small.tableName])).rows[0].n as number;
    expect(parts).toBe(Math.ceil((small.rowCounts.train + small.rowCounts.validation + small.rowCounts.test) / 3));
    const byWindow = await training.createDataset(record, { idempotencyKey: uniqueId('window'), strategy: 'window' });
    const rowsOf = async (dataset: typeof small) => {
      const rows: Array<Record<string, unknown>> = [];
      for (const split of ['train', 'validation', 'test'] as const) for await (const batch of training.streamSplit(dataset, split, ['event_id', 'at', 'amount', 'score', 'fraud', '_split'])) rows.push(...batch);
      return rows.sort((a, b) => Number(a.event_id) - Number(b.event_id));
    };
    const rows = await rowsOf(small);
    expect(rows.length).toBeGreaterThan(6);
    expect(rows).toEqual(await rowsOf(byWindow));
  });

  it('a build resumed after its first chunks were committed has the statistics of one that ran through', async () => {
    // The chunks a build writes give their statistics as they go in (split-statistics.ts);
    // those an earlier attempt committed are read back in SQL. Both in one build here.
    const record = await new FeatureStore({ knex: db.knex }).registerView(keyedByFeature);
    const training = new TrainingStore({ knex: db.knex });
    const options = { chunks: 4, parallelism: 1 };
    const through = await training.createDataset(record, { idempotencyKey: uniqueId('through'), ...options });
    const key = uniqueId('resumed');
    // A build that fails once its first pass committed its chunk (as when its connection is
    // lost): an error from its stage callback as the second pass starts.
    let spines = 0;
    const failing = (stage: string) => {
      if (stage === 'spine' && ++spines === 2) throw new Error('lost in the second pass');
    };
    await expect(training.createDataset(record, { idempotencyKey: key, ...options, onStage: failing })).rejects.toThrow('lost in the second pass');
    const resumed: number[][] = [];
    const again = await training.createDataset(record, { idempotencyKey: key, ...options, onResume: (chunks) => resumed.push(chunks) });
    expect(resumed).toEqual([[expect.any(Number)]]);
    expect(again.rowCounts).toEqual(through.rowCounts);
    expect(again.statistics).toEqual(through.statistics);
    expect(again.statistics.user_id).toEqual({ categories: ['u1', 'u2'] });
  });

  it('fits bins on the train split\'s quantiles in SQL, as the encoder\'s own statistics would', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(binned);
    const training = new TrainingStore({ knex: db.knex });
    const dataset = await training.createDataset(record, { idempotencyKey: uniqueId('bins') });
    const amounts: number[] = [];
    for await (const batch of training.streamSplit(dataset, 'train', ['amount'])) amounts.push(...batch.map((r) => Number(r.amount)));
    expect(amounts.length).toBe(dataset.rowCounts.train);
    expect(dataset.statistics.amount).toEqual({ count: amounts.length, quantiles: quantilesOf(amounts.sort((a, b) => a - b), 4) });
    expect(dataset.statistics.score).toMatchObject({ count: expect.any(Number), mean: expect.any(Number) });
  });

  it('standardizes on moments that come out the same every time, even where Postgres would aggregate in parallel', async () => {
    // A train split big enough to share out: 400k rows whose sums are not exact in floats.
    const table = uniqueId('moments_probe');
    await db.knex.raw(`create table ?? as select case when g % 3 = 0 then 'train' else 'test' end as _split, (g % 997) / 7.0 + sin(g) as x, g % 2 = 0 as flag from generate_series(1, 1200000) g`, [table]);
    await db.knex.raw('analyze ??', [table]);
    const features = [{ name: 'x', type: 'float' }, { name: 'flag', type: 'bool' }];
    const runs = new Set<string>();
    try {
      for (let i = 0; i < 4; i++) {
        await db.knex.transaction(async (trx) => {
          // Every plan parallel if it can be: what a big table gets from Postgres by itself.
          await trx.raw(`select set_config('parallel_setup_cost', '0', true), set_config('parallel_tuple_cost', '0', true), set_config('min_parallel_table_scan_size', '0', true), set_config('max_parallel_workers_per_gather', '2', true)`);
          const plan = ((await trx.raw(`explain select avg(x) from ?? where _split = 'train'`, [table])) as { rows: Array<{ 'QUERY PLAN': string }> }).rows.map((r) => r['QUERY PLAN']).join('\n');
          expect(plan).toMatch(/Parallel Seq Scan/);
          runs.add(JSON.stringify(await trainMoments(trx, table, features)));
          // The transaction's own settings are back as they were.
          expect(((await trx.raw(`select current_setting('max_parallel_workers_per_gather') as n`)) as { rows: Array<{ n: string }> }).rows[0]?.n).toBe('2');
        });
      }
      expect(runs.size).toBe(1);
      const moments = JSON.parse([...runs][0] as string) as Record<string, { count: number; mean: number; std: number }>;
      expect(moments.x?.count).toBe(400_000);
      expect(moments.flag).toEqual({ count: 400_000, mean: 0.5, std: 0.5 });
    } finally {
      await db.knex.raw('drop table if exists ??', [table]);
    }
  });

  it('combines the moments of a dataset\'s chunks into those of the whole, in a fixed order', () => {
    const xs = Array.from({ length: 3001 }, (_, i) => (i % 997) / 7 + Math.sin(i) * 1e3);
    const exact = (v: number[]) => {
      const mean = v.reduce((a, b) => a + b, 0) / v.length;
      return { count: v.length, mean, std: Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length) };
    };
    const whole = exact(xs);
    const parts = [xs.slice(0, 1000), xs.slice(1000, 1001), [], xs.slice(1001)].map((v) => (v.length ? exact(v) : { count: 0, mean: 0, std: 0 }));
    const combined = combineMoments(parts);
    expect(combined.count).toBe(whole.count);
    expect(combined.mean).toBeCloseTo(whole.mean, 9);
    expect(combined.std).toBeCloseTo(whole.std, 9);
    expect(combineMoments(parts)).toEqual(combined);
    // One part with rows: its own figures, bit for bit.
    expect(combineMoments([{ count: 0, mean: 0, std: 0 }, parts[0] as NumericStats])).toBe(parts[0]);
  });

  it('records the commits it read, and is idempotent per key', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const key = uniqueId('idem');
    const first = await new TrainingStore({ knex: db.knex }).createDataset(record, { idempotencyKey: key });
    const again = await new TrainingStore({ knex: db.knex }).createDataset(record, { idempotencyKey: key });
    expect(again.id).toBe(first.id);
    const store = new FeatureStore({ knex: db.knex });
    const scoresCommit = await store.latestCommit(await store.group('scores', 1));
    expect(first.commits).toContainEqual({ featureGroup: 'scores', version: 1, commitId: scoresCommit?.id });
    expect(await new TrainingStore({ knex: db.knex }).datasetsUsingCommit({ featureGroup: 'scores', version: 1, commitId: scoresCommit?.id ?? -1 })).toContain(first.id);
  });

  it('reads a split on a thread of its own (split-reader.ts): the same batches in the same order, an abandoned pass cancelled, errors with their type', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const training = new TrainingStore({ knex: db.knex });
    const dataset = await training.createDataset(record, { idempotencyKey: uniqueId('reader') });
    const signature = fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind });
    const collect = async (batches: AsyncIterable<Batch>) => {
      const out: Array<{ x: number[]; y: number[]; size: number }> = [];
      for await (const b of batches) out.push({ x: [...b.x], y: [...b.y], size: b.size });
      return out;
    };
    const onMainThread = (split: Split, epoch: number, shuffle: boolean) => collect(splitBatches(training, dataset, view, split, createEncoder(signature), 2, shuffle)(epoch));
    const threadConnections = async () => Number((await db.knex.raw("select count(*) as n from pg_stat_activity where application_name = 'fti-split-reader'")).rows[0].n);
    // The thread keeps each split after its first pass (epoch-cache.ts): later passes replay it.
    const reader = new SplitReader({ ...training.database(), trainingDatasetId: dataset.id, signature, batchSize: 2, epochCacheBytes: 64 << 20 });
    try {
      const first = await collect(reader.batches('train', 1, true));
      expect(first.reduce((n, b) => n + b.size, 0)).toBe(dataset.rowCounts.train);
      expect(first).toEqual(await onMainThread('train', 1, true));
      // Another epoch is another shuffle, the same on both sides (replayed on the thread, read here).
      const second = await collect(reader.batches('train', 2, true));
      expect(second).not.toEqual(first);
      expect(second).toEqual(await onMainThread('train', 2, true));
      expect(await collect(reader.batches('validation', 1, false))).toEqual(await onMainThread('validation', 1, false));
      // A pass left after two batches (a stop mid-epoch) is cancelled; the next one reads whole.
      let taken = 0;
      for await (const _ of reader.batches('train', 3, true)) if (++taken === 2) break;
      expect(await collect(reader.batches('train', 3, true))).toEqual(await onMainThread('train', 3, true));
      expect(await threadConnections()).toBeGreaterThan(0);
    } finally {
      await reader.close();
    }
    // Closing ends the thread after it closed its pool.
    await expect.poll(threadConnections, { timeout: 5000 }).toBe(0);
    // A training run reads the same batches either way, so it trains the same model.
    const backend = await loadBackend('cpu', 'wasm');
    const params = MlpParamsSchema.parse({ family: 'mlp', epochs: 2, batchSize: 2, hiddenUnits: [4], seed: 3 });
    const train = (readOnThread: boolean) => trainOnDataset({ stores: { features: new FeatureStore({ knex: db.knex }), training }, backend, trainingDatasetId: dataset.id, params, readOnThread, ...(readOnThread ? { epochCacheBytes: 64 << 20 } : {}) });
    const [threaded, inline] = [await train(true), await train(false)];
    expect(threaded.history.map((h) => [h.loss, h.valLoss, h.samples])).toEqual(inline.history.map((h) => [h.loss, h.valLoss, h.samples]));
    expect(threaded.history).toHaveLength(2);
    // An error in the thread fails the pass with its message and failure type.
    const missing = new SplitReader({ ...training.database(), trainingDatasetId: 987654, signature, batchSize: 2, epochCacheBytes: 0 });
    try {
      await expect(collect(missing.batches('train', 1, true))).rejects.toMatchObject({ type: FailureType.NotFound, message: 'training dataset 987654 does not exist' });
    } finally {
      await missing.close();
    }
  });
  it('keeps a split after its first whole pass and replays it in later epochs: the same batches, without reading Postgres; a pass left early or a split over budget is not kept', async () => {
    const record = await new FeatureStore({ knex: db.knex }).registerView(view);
    const training = new TrainingStore({ knex: db.knex });
    const dataset = await training.createDataset(record, { idempotencyKey: uniqueId('epoch-cache') });
    const encoder = createEncoder(fitSignature(featureSpecs(view), dataset.statistics, { name: view.label.name, kind: view.outputKind }));
    const collect = async (batches: AsyncIterable<Batch>) => {
      const out: Array<{ x: number[]; y: number[]; size: number }> = [];
      for await (const b of batches) out.push({ x: [...b.x], y: [...b.y], size: b.size });
      return out;
    };
    const pass = (split: Split, epoch: number, shuffle: boolean, cache?: EpochCache<Split>) => splitBatches(training, dataset, view, split, encoder, 3, shuffle, cache)(epoch);
    const fresh = { train1: await collect(pass('train', 1, true)), train2: await collect(pass('train', 2, true)), train3: await collect(pass('train', 3, true)), validation: await collect(pass('validation', 1, false)) };
    expect(fresh.train2).not.toEqual(fresh.train1);

    const cache = new EpochCache<Split>(64 << 20);
    // A first pass left after its first batch (a stop mid-epoch) keeps nothing.
    expect(dataset.rowCounts.train).toBeGreaterThan(3);
    for await (const _ of pass('train', 1, true, cache)) break;
    expect(cache.get('train')).toBeUndefined();
    expect(await collect(pass('train', 1, true, cache))).toEqual(fresh.train1);
    expect(cache.get('train')?.rows).toBe(dataset.rowCounts.train);
    expect(await collect(pass('validation', 1, false, cache))).toEqual(fresh.validation);
    expect(cache.get('validation')?.rows).toBe(dataset.rowCounts.validation);
    // A budget smaller than a split keeps nothing of it.
    const small = new EpochCache<Split>(1000);
    expect(await collect(pass('train', 1, true, small))).toEqual(fresh.train1);
    expect(small.get('train')).toBeUndefined();

    // With the dataset's table out of reach, the kept splits still give the batches a read gave.
    const hidden = `${dataset.tableName}_hidden`;
    await db.knex.raw('alter table ?? rename to ??', [dataset.tableName, hidden]);
    try {
      expect(await collect(pass('train', 2, true, cache))).toEqual(fresh.train2);
      expect(await collect(pass('train', 3, true, cache))).toEqual(fresh.train3);
      expect(await collect(pass('validation', 2, false, cache))).toEqual(fresh.validation);
      await expect(collect(pass('train', 2, true, small))).rejects.toThrow(/does not exist/);
    } finally {
      await db.knex.raw('alter table ?? rename to ??', [hidden, dataset.tableName]);
    }
  });
});
