/**
 * Column segments (registry/feature-store/segments.ts): the stream plan reads a joined
 * group's range partitions from files on disk once it has read them from Postgres. A
 * join from segments must give exactly the rows of the SQL plan, in every snapshot:
 * a commit that writes to a partition gives it a new segment, the others are kept, and
 * a snapshot pinned before the commit still reads the rows it held.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineFeatureGroup, type FeatureGroupDefinition } from '../features/definitions.ts';
import { defineFeatureView } from '../features/views.ts';
import { FeatureStore, latestViewSnapshot, orderByKeyThenTime, orderByUint32, pointInTimeRows, pointInTimeSql, SegmentCache, segmentCache, segmentScratch, viewQuery, type FeatureGroupRecord, type PitQuery } from '../registry/feature-store/index.ts';
import { raw, sql } from '../registry/db/index.ts';
import { commitRows, type Row } from './helpers/commits.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

// This file's own cache: read once, when the first join asks for it.
const cacheDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fti-segments-'));
process.env.FTI_CACHE_DIR = cacheDir;
const segmentsDir = path.join(cacheDir, 'segments');

const readings = defineFeatureGroup({
  name: 'seg_readings',
  version: 1,
  entityKeys: ['sensor'],
  eventTime: 'at',
  features: { sensor: 'string', at: 'timestamp', value: 'float', count: 'int', ok: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
});
const checks = defineFeatureGroup({
  name: 'seg_checks',
  version: 1,
  entityKeys: ['check_id'],
  eventTime: 'at',
  features: { check_id: 'int', at: 'timestamp', sensor: 'string', passed: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'passed',
});
const view = defineFeatureView({
  name: 'seg_view',
  version: 1,
  spine: checks,
  label: 'passed',
  joins: [{ group: readings, on: { sensor: 'sensor' } }],
  features: ['seg_readings.value', 'seg_readings.count', 'seg_readings.ok'],
});

/** Day `d` of 2024 (1: January 1st) at hour `h`: January and February fall in two monthly partitions. */
const at = (d: number, h = 0, m = 0) => new Date(Date.UTC(2024, 0, d, h, m));

describe('column segments', () => {
  let db: TestDb;
  let store: FeatureStore;
  let readingsGroup: FeatureGroupRecord;
  let checksGroup: FeatureGroupRecord;

  const commit = (group: FeatureGroupRecord, def: FeatureGroupDefinition, rows: Row[]) => commitRows(store, group, def, rows);

  /** The query's rows by the stream plan (segments) and by the SQL window plan, each sorted by check. */
  async function bothPlans(q: PitQuery): Promise<{ stream: Row[]; sql: Row[] }> {
    const stream: Row[] = [];
    for await (const batch of pointInTimeRows(db.knex, q)) stream.push(...(batch as Row[]));
    const sqlRows = ((await raw(db.knex, pointInTimeSql({ ...q, strategy: 'window' }))) as { rows: Row[] }).rows;
    const byCheck = (a: Row, b: Row) => Number(a.check_id) - Number(b.check_id);
    return { stream: stream.sort(byCheck), sql: sqlRows.map((r) => ({ ...r, check_id: Number(r.check_id) })).sort(byCheck) };
  }
  const segmentFiles = async () => (await fs.readdir(segmentsDir).catch(() => [] as string[])).filter((f) => f.endsWith('.seg')).sort();

  beforeAll(async () => {
    db = await createTestDb('segments');
    store = new FeatureStore({ knex: db.knex });
    readingsGroup = await store.register(readings);
    checksGroup = await store.register(checks);
    const rows: Row[] = [];
    // Three sensors, a reading every 6 hours through January and February (some values null).
    for (let d = 1; d <= 60; d++) {
      for (const h of [0, 6, 12, 18]) {
        for (const sensor of ['a', 'b', 'c']) {
          const n = d * 4 + h / 6;
          rows.push({ sensor, at: at(d, h), value: sensor === 'c' && n % 7 === 0 ? null : n + sensor.charCodeAt(0) / 1000, count: n, ok: n % 2 === 0 });
        }
      }
    }
    await commit(readingsGroup, readings, rows);
    const spine: Row[] = [];
    for (let i = 0; i < 120; i++) spine.push({ check_id: i, at: at(1 + i / 2, 3, i % 60), sensor: ['a', 'b', 'c', 'z'][i % 4] as string, passed: i % 3 === 0 });
    await commit(checksGroup, checks, spine);
  });

  afterAll(async () => {
    await db?.close();
    await fs.rm(cacheDir, { recursive: true, force: true });
  });

  it('reads a joined group from its partitions\' segments, to the very rows of the SQL plan, and keeps a segment until a commit writes to its range', async () => {
    const cache = segmentCache();
    expect(cache?.dir).toBe(segmentsDir);
    const def = await store.registerView(view);
    const before = await latestViewSnapshot(db.knex, def.definition);
    const whole = viewQuery(def.definition, before, { withLabel: true, strategy: 'window' });
    // From mid-February: January's rows come in as seeds (by an index probe), February's from its segment.
    const february = viewQuery(def.definition, before, { start: at(45), end: at(61), withLabel: true, strategy: 'window' });

    const first = await bothPlans(whole);
    expect(first.stream).toHaveLength(120);
    expect(first.stream.filter((r) => r.value !== null).length).toBeGreaterThan(80);
    expect(first.stream).toEqual(first.sql);
    await cache?.written();
    const files = await segmentFiles();
    expect(files).toHaveLength(2);
    // Again, from the files (none read from Postgres again), and the window that starts in February.
    expect((await bothPlans(whole)).stream).toEqual(first.sql);
    const late = await bothPlans(february);
    expect(late.stream.length).toBeGreaterThan(20);
    expect(late.stream).toEqual(late.sql);
    // Windows that keep a few days of February read only those rows of its file (each key's run, by positioned reads): the same rows.
    for (const [start, end] of [
      [57, 61],
      [45, 50],
    ] as const) {
      const narrow = await bothPlans(viewQuery(def.definition, before, { start: at(start), end: at(end), withLabel: true, strategy: 'window' }));
      expect(narrow.stream.length).toBeGreaterThan(5);
      expect(narrow.stream).toEqual(narrow.sql);
    }
    // The read buffers are kept for the next join (segmentScratch); made too small here, a
    // narrow read grows its buffer twice, keeping the file's event times it read first: the same rows.
    const kept = [segmentScratch.take(), segmentScratch.take()];
    expect(kept.every((scratch) => (scratch.buf?.length ?? 0) > 1000)).toBe(true);
    for (const scratch of kept) {
      scratch.buf = Buffer.alloc(8);
      segmentScratch.give(scratch);
    }
    const regrown = await bothPlans(viewQuery(def.definition, before, { start: at(57), end: at(61), withLabel: true, strategy: 'window' }));
    expect(regrown.stream).toEqual(regrown.sql);
    const grown = kept.filter((scratch) => (scratch.buf?.length ?? 0) > 8);
    expect(grown).toHaveLength(1);
    // A join of one file took one buffer; the pool hands out its largest first, so the next
    // join gets the buffer that fits rather than growing the small one (a copy, and garbage).
    const next = segmentScratch.take();
    expect(next).toBe(grown[0]);
    segmentScratch.give(next);
    expect(await segmentFiles()).toEqual(files);

    // A correction of one February reading: February's partition gets a new segment, January's is kept.
    // Known only from now (the watermark rule), it hides the value it corrects from check 98
    // (sensor c, day 50 at 03:38), which sees the reading before instead.
    await commit(readingsGroup, readings, [{ sensor: 'c', at: at(50, 0), value: -1, count: -1, ok: false }]);
    const after = await latestViewSnapshot(db.knex, def.definition);
    const now = await bothPlans(viewQuery(def.definition, after, { withLabel: true, strategy: 'window' }));
    expect(now.stream).toEqual(now.sql);
    const check98 = (rows: Row[]) => rows.find((r) => r.check_id === 98);
    expect(check98(first.stream)).toMatchObject({ count: 50 * 4 });
    expect(check98(now.stream)).toMatchObject({ count: 49 * 4 + 3 });
    expect(now.stream.filter((r) => r.check_id !== 98)).toEqual(first.stream.filter((r) => r.check_id !== 98));
    await cache?.written();
    const later = await segmentFiles();
    expect(later).toHaveLength(3);
    expect(later.filter((f) => files.includes(f))).toHaveLength(2);
    // The snapshot before the correction still reads the rows it held (its February segment is still there).
    expect((await bothPlans(whole)).stream).toEqual(first.sql);
    expect(await segmentFiles()).toEqual(later);

    // A file cut short is not trusted: its rows are read from Postgres again.
    for (const f of later) await fs.truncate(path.join(segmentsDir, f), 100);
    expect((await bothPlans(whole)).stream).toEqual(first.sql);
  });

  it('reads a partition no file holds by the windows joins ask for, until they asked for a whole partition\'s rows, then fills its segment', async () => {
    const cache = segmentCache();
    // A new reading in February: its partition's segment gets a new name, with no file yet.
    await commit(readingsGroup, readings, [{ sensor: 'a', at: at(59, 3), value: 1234.5, count: 7, ok: true }]);
    const def = await store.registerView(view);
    const snapshot = await latestViewSnapshot(db.knex, def.definition);
    const files = await segmentFiles();
    /** A join of [start, end), by both plans: the same rows, and the files after it. */
    const window = async (start: number, end: number) => {
      const rows = await bothPlans(viewQuery(def.definition, snapshot, { start: at(start), end: at(end), withLabel: true, strategy: 'window' }));
      expect(rows.stream.length).toBeGreaterThan(3);
      expect(rows.stream).toEqual(rows.sql);
      await cache?.written();
      return { rows: rows.stream, files: await segmentFiles() };
    };
    // The correction before made the group's rows known up to years late, so a join reads
    // February from its first day to the window's end: 8 of its 29 days, then 18.
    expect((await window(35, 40)).files).toEqual(files);
    expect((await window(45, 50)).files).toEqual(files);
    // The shares asked for so far, tallied beside the segments (every thread and process that keeps them here adds up).
    const tallies = async () => (await fs.readdir(segmentsDir)).filter((f) => f.endsWith('.asked'));
    expect(await tallies()).toHaveLength(1);
    // 4 more days: 30 of 29 asked for, so this join reads February whole and writes its file.
    const filled = await window(33, 36);
    expect(filled.files).toHaveLength(files.length + 1);
    expect(await tallies()).toEqual([]);
    // From the file now.
    expect((await window(59, 61)).files).toEqual(filled.files);
  });

  it('keeps at most its budget of files (FTI_SEGMENT_CACHE_MB), the least recently used out first', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fti-segment-budget-'));
    const def = await store.registerView(view);
    const join = viewQuery(def.definition, await latestViewSnapshot(db.knex, def.definition), { withLabel: true, strategy: 'window' }).joins[0];
    if (!join) throw new Error('the view has no join');
    const spec = { group: join.shape, pin: join.visible, features: join.features.map((f) => f.column), keyText: sql`(g.sensor)::text` };
    const pause = () => new Promise((resolve) => setTimeout(resolve, 30));
    const named = async (cache: SegmentCache, features: string[]) => {
      const parts = (await cache.plan(db.knex, { ...spec, features })) ?? [];
      return parts.map((p) => ({ ...p, name: p.name as string }));
    };
    const files = async () => (await fs.readdir(dir)).filter((f) => f.endsWith('.seg')).sort();
    try {
      const unbounded = new SegmentCache(dir, 2 ** 40);
      const [january, february] = await named(unbounded, spec.features);
      if (!january || !february) throw new Error('expected two partitions');
      const janBytes = (await unbounded.load(db.knex, spec, january))?.bytes ?? 0;
      await unbounded.written();
      await pause();
      const febBytes = (await unbounded.load(db.knex, spec, february))?.bytes ?? 0;
      await unbounded.written();
      expect(await files()).toEqual([`${january.name}.seg`, `${february.name}.seg`].sort());
      await pause();
      // January read again (from its file): now the most recently used.
      expect((await unbounded.load(db.knex, spec, january))?.rows).toBeGreaterThan(0);
      await pause();
      // A third segment (February's values alone) under a budget that cannot hold all three: February's full one goes.
      const budgeted = new SegmentCache(dir, janBytes + febBytes - 1);
      const [, valuesOnly] = await named(budgeted, ['value']);
      if (!valuesOnly) throw new Error('expected two partitions');
      await budgeted.load(db.knex, { ...spec, features: ['value'] }, valuesOnly);
      await budgeted.written();
      expect(await files()).toEqual([`${january.name}.seg`, `${valuesOnly.name}.seg`].sort());
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('orders rows by key, then time, then row, as a comparison sort would', () => {
    const keys = [2, 0, 1, -1, 0, 2, 1, 0];
    const times = [5e15, 3, 2, 1, 3, -7, 2 ** 40, 0];
    const { order, first } = orderByKeyThenTime(keys, times, 3);
    const expected = keys
      .map((k, row) => ({ k, row, t: times[row] as number }))
      .filter((r) => r.k >= 0)
      .sort((a, b) => a.k - b.k || a.t - b.t || a.row - b.row)
      .map((r) => r.row);
    expect([...order]).toEqual(expected);
    expect([...first]).toEqual([0, 3, 5, 7]);
    // Times that are not whole numbers take the comparison sort: the same order.
    const fractional = orderByKeyThenTime([0, 0, 0], [0.5, -0.25, 0.5], 1);
    expect([...fractional.order]).toEqual([1, 0, 2]);
    // Times in whole minutes (microseconds since 1970, as a spine's), sorted in minutes, with ties; then one odd microsecond among them.
    const minutes = Array.from({ length: 5000 }, (_, i) => 978_307_200_000_000 + ((i * 7919) % 3001) * 60_000_000);
    const minuteKeys = minutes.map((_, i) => (i * 31) % 7);
    const byComparison = (k: number[], t: number[]) =>
      k
        .map((_, row) => row)
        .sort((a, b) => (k[a] as number) - (k[b] as number) || (t[a] as number) - (t[b] as number) || a - b);
    expect([...orderByKeyThenTime(minuteKeys, minutes, 7).order]).toEqual(byComparison(minuteKeys, minutes));
    const odd = minutes.map((t, i) => (i === 4321 ? t + 1 : t));
    expect([...orderByKeyThenTime(minuteKeys, odd, 7).order]).toEqual(byComparison(minuteKeys, odd));
  });

  it('orders records by an unsigned 32-bit key, ties in record order, as a comparison sort would', () => {
    // Keys across every digit of the sort (12 bits a pass), with ties, the extremes, and a bucket whose top byte all share.
    const keys = [0xffffffff, 0, 0x1000, 0xfff, 0x12345678, 0x1000, 0x80000000, 0, 0xffffffff, 0x00fff000, 0x12345677];
    const byComparison = (k: number[]) => k.map((_, i) => i).sort((a, b) => (k[a] as number) - (k[b] as number) || a - b);
    expect([...orderByUint32(keys, keys.length)]).toEqual(byComparison(keys));
    const bucket = Array.from({ length: 5000 }, (_, i) => 0x7f000000 + ((i * 2654435761) % 0x1000000));
    expect([...orderByUint32(bucket, bucket.length)]).toEqual(byComparison(bucket));
    expect([...orderByUint32([], 0)]).toEqual([]);
  });
});
