/**
 * Spine segments (registry/feature-store/spine-segments.ts): a training dataset's build
 * reads its spine's range partitions from files on disk once it has read them from
 * Postgres, and computes the columns Postgres computed per row (chunk, split) itself.
 * A build from segments must store exactly the rows, in exactly the order, of a build
 * by the SQL plan, in every snapshot: a commit that writes to a partition gives it a
 * new segment, the others are kept, and a file not whole is read again from Postgres.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup, type FeatureGroupDefinition } from '../features/definitions.ts';
import { defineFeatureView } from '../features/views.ts';
import { FeatureStore, labelledSpineRange, latestViewSnapshot, pointInTimeSql, segmentCache, spineThreadReads, viewQuery, type FeatureGroupRecord, type FeatureViewRecord, type PitQuery, type SpineRange } from '../registry/feature-store/index.ts';
import { raw, sql } from '../registry/db/index.ts';
import { TrainingStore, type CreateTrainingDatasetOptions } from '../registry/training/index.ts';
import { commitRows, type Row } from './helpers/commits.ts';
import { createTestDb, uniqueId, type TestDb } from './helpers/services.ts';

// This file's own cache: read once, when the first build asks for it.
const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fti-spine-segments-'));
process.env.FTI_CACHE_DIR = cacheDir;
const segmentsDir = path.join(cacheDir, 'segments');

const readings = defineFeatureGroup({
  name: 'spn_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float', count: 'int' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const checks = defineFeatureGroup({
  name: 'spn_checks',
  version: 1,
  entityKeys: ['check_id'],
  eventTime: 'at',
  features: { check_id: 'int', at: 'timestamp', sensor: 'string', load: 'float', passed: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'passed',
});
const view = defineFeatureView({
  name: 'spn_view',
  version: 1,
  spine: checks,
  label: 'passed',
  joins: [{ group: readings, on: { sensor: 'sensor' } }],
  features: ['spn_checks.load', { feature: 'spn_checks.sensor', encoding: 'one_hot' }, 'spn_readings.value', 'spn_readings.count'],
});

/** Day `d` of 2024 (1: January 1st) at hour `h`: January and February fall in two monthly partitions. */
const at = (d: number, h = 0, m = 0) => new Date(Date.UTC(2024, 0, d, h, m));

/** Whether a build of several chunks reads some of them on the spine thread (spine-helper.ts): where there are two cores. */
const helper = os.availableParallelism() > 1 ? 1 : 0;

describe('spine segments', () => {
  let db: TestDb;
  let store: FeatureStore;
  let training: TrainingStore;
  let readingsGroup: FeatureGroupRecord;
  let checksGroup: FeatureGroupRecord;
  let record: FeatureViewRecord;

  const commit = (group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: Row[]) => commitRows(store, group, def, rows);

  /** Spine rows `from` to `to` (check ids), over January and February; every seventh unlabelled, every fifth at sensor 'z' (which joins nothing), one with no sensor. */
  const spineRows = (from: number, to: number, load = (i: number) => i / 4): Row[] =>
    Array.from({ length: to - from }, (_, k) => {
      const i = from + k;
      return { check_id: i, at: at(1 + (i % 58), (i * 7) % 24, i % 60), sensor: i === 13 ? null : (['a', 'b', 'c', 'd', 'z'][i % 5] as string), load: load(i), passed: i % 7 === 0 ? null : i % 3 === 0 };
    });

  /** A dataset's rows in their stored order (partition by partition, each in its physical order), every column as text. */
  async function storedRows(tableName: string): Promise<string[]> {
    const parts = (await db.knex.raw(`select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid where i.inhparent = to_regclass(?) order by 1`, [tableName])) as { rows: Array<{ relname: string }> };
    const rows: string[] = [];
    for (const p of parts.rows) {
      const r = (await db.knex.raw(`select t::text as row from ?? t order by ctid`, [p.relname])) as { rows: Array<{ row: string }> };
      rows.push(...r.rows.map((x) => `${p.relname.slice(-2)} ${x.row}`));
    }
    return rows;
  }

  /** The same dataset built by the stream plan (segments) and by the SQL window plan: stored rows, split counts and statistics. */
  async function bothPlans(options: Partial<CreateTrainingDatasetOptions> = {}) {
    const build = (strategy: 'stream' | 'window') => training.createDataset(record, { idempotencyKey: uniqueId(strategy), chunks: 3, strategy, ...options });
    const stream = await build('stream');
    await segmentCache()?.written();
    const window = await build('window');
    return { stream, window, streamRows: await storedRows(stream.tableName), windowRows: await storedRows(window.tableName) };
  }

  /** The spine segments' files, by name, with their last change. */
  async function spineFiles(): Promise<Map<string, number>> {
    const files = new Map<string, number>();
    for (const f of await fs.readdir(segmentsDir).catch(() => [] as string[])) {
      if (!f.endsWith('.seg')) continue;
      const file = path.join(segmentsDir, f);
      const head = Buffer.alloc(8);
      const handle = await fs.open(file, 'r');
      await handle.read(head, 0, 8, 0);
      await handle.close();
      if (head.toString('latin1') === 'FTISPN01') files.set(f, (await fs.stat(file)).mtimeMs);
    }
    return files;
  }

  beforeAll(async () => {
    db = await createTestDb('spine_segments');
    store = new FeatureStore({ knex: db.knex });
    training = new TrainingStore({ knex: db.knex });
    readingsGroup = await store.register(readings);
    checksGroup = await store.register(checks);
    const rows: Row[] = [];
    // Four sensors, a reading every 6 hours from late December through February.
    for (let d = -3; d <= 60; d++) {
      for (const h of [0, 6, 12, 18]) {
        for (const sensor of ['a', 'b', 'c', 'd']) {
          const n = (d + 4) * 4 + h / 6;
          rows.push({ sensor, at: at(d, h), value: sensor === 'c' && n % 7 === 0 ? null : n + sensor.charCodeAt(0) / 1000, count: n });
        }
      }
    }
    await commit(readingsGroup, readings, rows);
    await commit(checksGroup, checks, spineRows(0, 400));
    record = await store.registerView(view);
  });

  afterAll(async () => {
    await db?.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });

  it('stores the rows of the SQL plan, in its order, from a spine read from Postgres and then from its segments', async () => {
    expect(segmentCache()?.dir).toBe(segmentsDir);
    // The first build reads the spine's two partitions from Postgres, and keeps them.
    const before = spineThreadReads();
    const first = await bothPlans();
    expect(spineThreadReads()).toBe(before);
    expect(first.streamRows.length).toBe(400 - Math.ceil(400 / 7));
    expect(first.streamRows).toEqual(first.windowRows);
    expect(first.stream.rowCounts).toEqual(first.window.rowCounts);
    expect(first.stream.statistics).toEqual(first.window.statistics);
    const files = await spineFiles();
    expect(files.size).toBe(2);

    // The next reads them from their files (a read marks a file used), to the same rows:
    // its three chunks' spines read on two threads, the third chunk's on the spine thread.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const threadReads = spineThreadReads();
    const second = await bothPlans();
    expect(spineThreadReads()).toBe(threadReads + helper);
    expect(second.streamRows).toEqual(first.streamRows);
    expect(second.stream.statistics).toEqual(first.stream.statistics);
    const after = await spineFiles();
    expect([...after.keys()]).toEqual([...files.keys()]);
    for (const [name, changed] of after) expect(changed).toBeGreaterThan(files.get(name) as number);

    // Other splits and chunks from the same segments: the split and the chunk are the build's, not the file's.
    const other = await bothPlans({ chunks: 2, validationStart: at(20), testStart: at(45) });
    expect(spineThreadReads()).toBe(threadReads + 2 * helper);
    expect(other.streamRows).toEqual(other.windowRows);
    expect(other.stream.rowCounts).toEqual(other.window.rowCounts);
    expect((await spineFiles()).size).toBe(2);
  });

  it('a commit that writes to February gives it a new segment, keeps January\'s, and a file not whole is read again from Postgres', async () => {
    const before = await spineFiles();
    // New checks in February only, and new loads for some of February's (a later version of a row).
    await commit(checksGroup, checks, [...spineRows(400, 430).map((r) => ({ ...r, at: at(40, (r.check_id as number) % 24) })), ...spineRows(100, 130, (i) => -i).filter((r) => (r.at as Date) >= at(32))]);
    const built = await bothPlans();
    expect(built.streamRows).toEqual(built.windowRows);
    expect(built.streamRows).toHaveLength(400 - Math.ceil(400 / 7) + 26);
    expect(built.streamRows.some((r) => /,-1\d\d,/.test(r))).toBe(true);
    const after = await spineFiles();
    // One new file, February's; January's is read again (a build of January alone makes none).
    expect([...after.keys()].filter((f) => !before.has(f))).toHaveLength(1);
    const january = await bothPlans({ start: at(1), end: at(32) });
    expect(january.streamRows).toEqual(january.windowRows);
    expect([...(await spineFiles()).keys()]).toEqual([...after.keys()]);

    // Every file cut short: each is read again from Postgres, and written whole (the spine thread finds them cut short too: its read is dropped).
    for (const f of after.keys()) await fs.truncate(path.join(segmentsDir, f), 100);
    const threadReads = spineThreadReads();
    const again = await bothPlans();
    expect(spineThreadReads()).toBe(threadReads);
    expect(again.streamRows).toEqual(built.streamRows);
    // Those the snapshot reads (January's, and February's new one) are whole again; February's old one, read by none, is not.
    const whole = [];
    for (const f of after.keys()) if ((await fs.stat(path.join(segmentsDir, f))).size > 100) whole.push(f);
    expect(whole).toHaveLength(2);
    expect(whole).toEqual(expect.arrayContaining([...after.keys()].filter((f) => !before.has(f))));
  });

  it('a window of a few days of a partition reads them from Postgres, and its segment is not filled until the windows add up to it', async () => {
    const files = await spineFiles();
    for (const f of files.keys()) await fs.rm(path.join(segmentsDir, f));
    const few = await bothPlans({ start: at(3), end: at(9) });
    expect(few.streamRows.length).toBeGreaterThan(0);
    expect(few.streamRows).toEqual(few.windowRows);
    expect((await spineFiles()).size).toBe(0);
  });

  /** The labelled spine's range files (spine-range.ts), by name, with their contents. */
  async function rangeFiles(): Promise<Map<string, SpineRange & { format: string }>> {
    const files = new Map<string, SpineRange & { format: string }>();
    for (const f of await fs.readdir(segmentsDir).catch(() => [] as string[])) {
      if (!f.endsWith('.seg')) continue;
      const text = await fs.readFile(path.join(segmentsDir, f), 'utf8').catch(() => '');
      if (text.startsWith('{"format":"FTISPR01"')) files.set(f, JSON.parse(text) as SpineRange & { format: string });
    }
    return files;
  }

  /** The labelled spine's range in Postgres alone, and from the files (filled first where missing). */
  async function bothRanges(window: { start?: Date; end?: Date } = {}): Promise<{ files: SpineRange; postgres: SpineRange }> {
    const q: PitQuery = { ...viewQuery(record.definition, await latestViewSnapshot(db.knex, record.definition), { withLabel: true, strategy: 'lateral' }), ...window };
    const files = await labelledSpineRange(db.knex, q);
    await segmentCache()?.written();
    const r = (await raw(db.knex, sql`select count(*)::int as rows, (extract(epoch from min("at")) * 1000000)::bigint as first, (extract(epoch from max("at")) * 1000000)::bigint as last from (${pointInTimeSql({ ...q, joins: [] })}) s`)) as {
      rows: Array<{ rows: number; first: number; last: number }>;
    };
    const row = r.rows[0] as { rows: number; first: number; last: number };
    return { files, postgres: { rows: row.rows, first: Number(row.first), last: Number(row.last) } };
  }

  it("keeps the labelled spine's range per partition: read from its file after the first count, a partition a commit wrote to counted again", async () => {
    for (const f of (await rangeFiles()).keys()) await fs.rm(path.join(segmentsDir, f));
    const first = await bothRanges();
    expect(first.files).toEqual(first.postgres);
    expect(first.files.rows).toBeGreaterThan(300);
    const files = await rangeFiles();
    expect(files.size).toBe(2);

    // Read from the files: one altered is believed (it is named by the commit that last wrote its partition).
    const [name, kept] = [...files][0] as [string, SpineRange & { format: string }];
    await fs.writeFile(path.join(segmentsDir, name), JSON.stringify({ ...kept, rows: kept.rows + 1000 }));
    expect((await bothRanges()).files.rows).toBe(first.postgres.rows + 1000);
    // One not whole is counted again in Postgres, and written again.
    await fs.writeFile(path.join(segmentsDir, name), '{"format":"FTISPR01","rows":');
    expect((await bothRanges()).files).toEqual(first.postgres);
    expect((await rangeFiles()).get(name)).toEqual(kept);

    // A commit to February (a later, unlabelled version of a labelled row; a new check on the 27th, the last day): its partition is counted again, January's file is kept.
    await commit(checksGroup, checks, [{ ...(spineRows(101, 102)[0] as Row), passed: null }, { ...(spineRows(2000, 2001)[0] as Row), at: at(58, 23, 59) }]);
    const after = await bothRanges();
    expect(after.files).toEqual(after.postgres);
    expect(after.files.rows).toBe(first.postgres.rows);
    expect(after.files.last).toBe(at(58, 23, 59).getTime() * 1000);
    const now = await rangeFiles();
    expect([...now.keys()].filter((f) => !files.has(f))).toHaveLength(1);

    // A window: February, which it covers whole, from its file; January's days in Postgres.
    const window = await bothRanges({ start: at(10), end: at(70) });
    expect(window.files).toEqual(window.postgres);
    expect(window.files.rows).toBeLessThan(after.files.rows);
  });
});

