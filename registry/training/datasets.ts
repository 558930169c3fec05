/**
 * Training datasets: a feature view's point-in-time join over a time window,
 * materialized as a table of its own (td_<id>) with time-based train / validation /
 * test splits, the commits it read, and the train split's statistics (which fit the
 * model's encoding). The join runs by the stream plan (pit-stream.ts: the spine
 * sorted in Postgres, each joined group read once and placed in Node, the rows
 * written back by binary COPY) or, on request, one of the SQL plans; all give the
 * same rows. The table's partitions (one per chunk of the join) are each stored in a
 * shuffled order (a hash of the spine keys and event time), and a split is read as
 * their merge by that key, so a sequential read of a split is already mixed.
 */
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import { mergeBy } from '../../core/streams.ts';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { combineMoments, type FeatureStats, type NumericStats } from '../../ml/stats.ts';
import { SplitStatisticsTap, type ChunkStatistics } from './split-statistics.ts';
import { shuffleKey, type ServerText } from './shuffle-key.ts';
import { cancellableTransaction, cancelledWith, col, cols, id, ids, int, join, raw, sql, streamQueries, streamQuery, streamTablesInStoredOrder, toNative, type Sql } from '../db/index.ts';
import { chunkSizesSql, latestViewSnapshot, pointInTimeColumns, pointInTimeSql, streamPointInTime, viewQuery, labelledSpineRange, type SpineRange, type ExtraColumn, type StreamStep, type FeatureViewRecord, type PitPlan, type PitStrategy, type ViewSnapshot } from '../feature-store/index.ts';

export type Split = 'train' | 'validation' | 'test';

export interface TrainingDataset {
  id: number;
  featureViewId: number;
  /** 'reaped': `fti gc` dropped its table (registry/training/gc.ts); only its row and lineage remain. */
  status: 'creating' | 'ready' | 'failed' | 'reaped';
  tableName: string;
  windowStart: Date;
  windowEnd: Date;
  validationStart: Date;
  testStart: Date;
  rowCounts: Record<Split, number>;
  statistics: Record<string, FeatureStats>;
  commits: FeatureGroupCommitRef[];
  workflowId: string | null;
  createdAt: Date;
}

interface TrainingDatasetRow {
  id: number;
  feature_view_id: number;
  idempotency_key: string;
  status: TrainingDataset['status'];
  table_name: string;
  finished_at: Date | null;
  window_start: Date;
  window_end: Date;
  validation_start: Date;
  test_start: Date;
  row_counts: Record<Split, number>;
  statistics: Record<string, FeatureStats>;
  workflow_id: string | null;
  created_at: Date;
  reaped_at: Date | null;
}

export interface CreateTrainingDatasetOptions {
  idempotencyKey: string;
  workflowId?: string;
  /** Spine event-time window [start, end); defaults to all of the spine's rows. */
  start?: Date;
  end?: Date;
  /** Split boundaries; default: the last 20% of the window is split evenly into validation and test. */
  validationStart?: Date;
  testStart?: Date;
  /** How the join runs: streamed through Node (default), or one of the SQL plans. All give the same rows. */
  strategy?: PitPlan;
  /** Categories kept per one-hot feature at most (most frequent first). */
  maxCategories?: number;
  /**
   * Chunks the join is cut into (by a hash of the first join's key); default 2. Each is
   * committed on its own, and a retried build (same key, same snapshot and window) keeps
   * those it finished.
   */
  chunks?: number;
  /**
   * Without `chunks`: the spine rows a chunk holds on average at most (default 1.5M), so
   * the chunk count grows with the spine. The stream plan holds a pass's chunks in memory
   * (about 300 bytes a row for the flights view), and packs its passes by the chunks'
   * real sizes: a pass holds at most `parallelism` × maxChunkRows spine rows, unless one
   * chunk alone is bigger (a chunk is cut by join key, so one key's rows share one), and
   * then that chunk is a pass of its own. This bounds the build's memory.
   */
  maxChunkRows?: number;
  /** Chunks joined at a time (one backend, so one core, each); default 2. */
  parallelism?: number;
  /** Cancels the build: its statements are cancelled in Postgres and its scratch table dropped. */
  signal?: AbortSignal;
  /** Told which chunks an earlier attempt of this build had finished (they are not joined again). */
  onResume?: (chunks: number[]) => void;
  /** Told how long each stage took (join, attach, statistics), in seconds: for benchmarks. */
  onStage?: (stage: DatasetStage, seconds: number) => void;
}

/**
 * 'join': the join's chunks, each in shuffled order, of which (stream plan) 'spine':
 * reading the spine, 'groups': reading the joined groups, 'write': writing the rows;
 * 'statistics': the split counts and the train split's statistics (gathered as the
 * stream plan wrote each chunk, split-statistics.ts; else read from the chunks' tables
 * side by side); 'attach': the dataset's table from the chunks.
 */
export type DatasetStage = 'join' | StreamStep | 'attach' | 'statistics';

const DATASET_CHUNKS = 2;
const MAX_CHUNK_ROWS = 1_500_000;
const DATASET_PARALLELISM = 2;

/**
 * The stream plan's passes: chunks packed first-fit by decreasing size (spine rows),
 * at most `perPass` chunks and `capacity` rows a pass; a chunk bigger than the capacity
 * is a pass of its own. Chunks with no size given hold no rows.
 */
export function packPasses(chunks: readonly number[], sizes: ReadonlyMap<number, number>, perPass: number, capacity: number): number[][] {
  const size = (c: number) => sizes.get(c) ?? 0;
  const passes: Array<{ chunks: number[]; rows: number }> = [];
  for (const chunk of [...chunks].sort((a, b) => size(b) - size(a) || a - b)) {
    const pass = passes.find((p) => p.chunks.length < perPass && p.rows + size(chunk) <= capacity);
    if (pass) {
      pass.chunks.push(chunk);
      pass.rows += size(chunk);
    } else passes.push({ chunks: [chunk], rows: size(chunk) });
  }
  return passes.map((p) => p.chunks.sort((a, b) => a - b));
}

/** Runs work(0 … count-1), at most `parallelism` at a time. */
async function inParallel(count: number, parallelism: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await work(next++);
  };
  await Promise.all(Array.from({ length: Math.min(parallelism, count) }, lane));
}

export function datasetTable(datasetId: number): string {
  return `td_${datasetId}`;
}

export async function createTrainingDataset(knex: Knex, view: FeatureViewRecord, options: CreateTrainingDatasetOptions): Promise<TrainingDataset> {
  const existing = await knex<TrainingDatasetRow>('training_datasets').where({ idempotency_key: options.idempotencyKey, status: 'ready' }).first();
  if (existing) return toTrainingDataset(knex, existing);
  const def = view.definition;
  const snapshot = await latestViewSnapshot(knex, def);
  const et = def.spine.eventTime;
  const { start, end, validationStart, testStart, spineRows } = await datasetWindow(knex, def, snapshot, options);

  // A 32-bit hash repeats (about 700 pairs among 2.5M flights): rows with the same key
  // are ordered by what makes a spine row unique, so a rebuild stores them, and a
  // trainer reads them, in the same order (bagging picks rows by position).
  const tiebreak = ids([...def.spine.entityKeys, et]);
  // Each chunk of the join runs in its own backend (so on its own core) and writes its
  // rows, already sorted into shuffled order, into a table of its own. (The stream plan
  // reads the spines of the chunks it writes together by slices of time instead, each
  // row routed by its _chunk: one scan of the spine, not one per chunk.) Those tables
  // become the partitions of the dataset's table, and readers merge them by the shuffle
  // key (streamSplit): the same order as one sorted table, without a second pass over
  // every row (the sort of the whole join was half of the build). Created and filled in
  // one transaction, a chunk's table skips the WAL on a wal_level=minimal server.
  //
  // A chunk's table is named after the build (its key) and what it read (snapshot,
  // window, chunking), so a retry of the same build keeps the chunks already committed,
  // and never those of another snapshot.
  const chunks = options.chunks ?? Math.max(DATASET_CHUNKS, Math.ceil((spineRows ?? (await spineRange(knex, def, snapshot, { start, end })).rows) / (options.maxChunkRows ?? MAX_CHUNK_ROWS)));
  const hash = (x: string) => crypto.createHash('sha1').update(x).digest('hex').slice(0, 8);
  const build = `td_joining_${hash(options.idempotencyKey)}`;
  const strategy = options.strategy ?? 'stream';
  const current = `${build}${hash(JSON.stringify({ view: view.id, commits: snapshot.commits, start, end, validationStart, testStart, chunks, strategy }))}`;
  const chunkTable = (index: number) => `${current}${index.toString(16).padStart(2, '0')}`;
  const split = sql`case when ${id(et)} < ${validationStart} then 'train' when ${id(et)} < ${testStart} then 'validation' else 'test' end`;
  const joinQuery = (plan: PitStrategy) => viewQuery(def, snapshot, { start, end, withLabel: true, strategy: plan });
  // The shuffle key (shuffle-key.ts): computed by the stream plan in Node where it can.
  const spineTypes = new Map(pointInTimeColumns(joinQuery('window')).map((c) => [c.name, c.pgType]));
  const shuffle = shuffleKey(def, spineTypes, await serverText(knex));
  const extra = (index: number): ExtraColumn[] => [
    { expr: split, as: '_split', fromTime: splitByTime(et, validationStart, testStart) },
    { ...shuffle, as: '_shuffle' },
    { expr: sql`${int(index)}::smallint`, as: '_chunk' },
  ];
  // Stored by shuffle key alone, not split first: a split read filters its rows, which
  // are then in shuffle order all the same, and Postgres sorts on one integer key many
  // times faster than on a three-valued text key with the hash as its tie-break.
  const order = sql`_shuffle, ${tiebreak}`;
  const chunkQuery = (index: number, plan: PitStrategy) => ({ ...joinQuery(plan), chunk: { index, count: chunks } });
  const rows = (index: number, plan: PitStrategy) =>
    sql`select q.*, ${join(extra(index).map((e) => sql`${e.expr} as ${id(e.as)}`), ', ')}
        from (${pointInTimeSql(chunkQuery(index, plan))}) q
        order by ${order}`;
  /**
   * A chunk's empty table, with its partition's constraint: checked row by row as the
   * rows go in, it spares attaching the table a scan of every row to prove it.
   */
  const createChunkTable = async (trx: Knex.Transaction, index: number) => {
    await raw(trx, sql`create table ${id(chunkTable(index))} as ${rows(index, 'lateral')} with no data`);
    await raw(trx, sql`alter table ${id(chunkTable(index))} add check (_chunk is not null and _chunk = ${int(index)})`);
  };
  /** Chunks into their tables, each created and filled in its own transaction: streamed together (the joined groups read once for all), or a SQL plan each. */
  const joinChunks = async (indices: number[]) => {
    if (strategy !== 'stream') {
      const index = indices[0] as number;
      await cancellableTransaction(knex, options.signal, async (trx) => {
        await trx.raw(`select set_config('work_mem', '256MB', true), set_config('max_parallel_workers_per_gather', '0', true)`);
        await createChunkTable(trx, index);
        await raw(trx, sql`insert into ${id(chunkTable(index))} ${rows(index, strategy)}`);
      });
      return;
    }
    const transactions = await Promise.all(indices.map(() => knex.transaction()));
    try {
      // Each backend asks the kernel to write its table's pages out as it fills them
      // (backend_flush_after, 256 pages: 2 MB), so that the commit, which waits for every
      // page to reach the disk, finds them there: it took 0.3-0.4 s of a 3M-row build after
      // the last row went in, against 0.03 s.
      await Promise.all(transactions.map((trx) => trx.raw(`select set_config('backend_flush_after', '256', true)`)));
      // Creating a chunk's table plans the join, which waits for locks on the groups' tables: cancellable like every statement of the build.
      await Promise.all(
        indices.map((index, i) => {
          const trx = transactions[i] as Knex.Transaction;
          return cancelledWith(knex, trx, options.signal, () => createChunkTable(trx, index));
        }),
      );
      const targets = indices.map((index, i) => {
        // The chunk's split counts and train statistics, gathered as its rows are written.
        const tap = new SplitStatisticsTap(features.numeric, features.oneHot);
        taps.set(index, tap);
        return { index, writer: transactions[i] as Knex.Transaction, table: chunkTable(index), extra: extra(index), tap };
      });
      await streamPointInTime(knex, joinQuery('window'), targets, { count: chunks, order: { key: '_shuffle', then: [...def.spine.entityKeys, et] }, chunkExtra: '_chunk', signal: options.signal, onStep: options.onStage });
      // Side by side: a commit waits for its table's pages to reach the disk (no WAL on a wal_level=minimal server).
      await Promise.all(transactions.map((trx) => trx.commit()));
    } catch (err) {
      await Promise.all(transactions.map((trx) => (trx.isCompleted() ? undefined : trx.rollback().catch(() => undefined))));
      throw err;
    }
  };
  /** Passes of `parallelism` chunks at most, packed by the chunks' spine rows so that a pass's memory is bounded (maxChunkRows). */
  const streamPasses = async (todo: number[], parallelism: number): Promise<number[][]> => {
    if (todo.length <= parallelism) return [todo];
    const sizesSql = chunkSizesSql(joinQuery('window'), chunks);
    if (!sizesSql) return Array.from({ length: Math.ceil(todo.length / parallelism) }, (_, i) => todo.slice(i * parallelism, (i + 1) * parallelism));
    const counted = (await raw(knex, sizesSql)) as { rows: Array<{ chunk: number; n: number }> };
    const sizes = new Map(counted.rows.map((r) => [Number(r.chunk), Number(r.n)]));
    return packPasses(todo, sizes, parallelism, parallelism * (options.maxChunkRows ?? MAX_CHUNK_ROWS));
  };
  const { signal } = options;
  const features = statisticsFeatures(def);
  /** Per chunk this attempt wrote by the stream plan, what its rows gave as they went in (a chunk an earlier attempt committed has none). */
  const taps = new Map<number, SplitStatisticsTap>();
  /** The chunk tables any attempt of this build left (of this snapshot or another). */
  const leftovers = async () =>
    ((await raw(knex, sql`select tablename from pg_tables where schemaname = current_schema() and starts_with(tablename, ${build})`)) as { rows: Array<{ tablename: string }> }).rows.map((t) => t.tablename);
  const drop = async (tables: string[]) => {
    if (tables.length) await raw(knex, sql`drop table if exists ${ids(tables)}`);
  };
  try {
    const found = await leftovers();
    await drop(found.filter((t) => !t.startsWith(current)));
    const all = Array.from({ length: chunks }, (_, i) => i);
    const todo = all.filter((i) => !found.includes(chunkTable(i)));
    if (todo.length < chunks) options.onResume?.(all.filter((i) => !todo.includes(i)));
    let last = performance.now();
    const stageDone = (stage: DatasetStage) => {
      const now = performance.now();
      options.onStage?.(stage, (now - last) / 1000);
      last = now;
    };
    // The stream plan joins `parallelism` chunks at a time (side by side in Postgres, one
    // pass over each joined group); a SQL plan runs that many chunks side by side.
    const parallelism = options.parallelism ?? DATASET_PARALLELISM;
    if (strategy === 'stream') {
      for (const pass of await streamPasses(todo, parallelism)) await joinChunks(pass);
    } else {
      await inParallel(todo.length, parallelism, (k) => joinChunks([todo[k] as number]));
    }
    stageDone('join');
    // The split counts and the train split's statistics: gathered as the rows were
    // written, or from the chunks' tables side by side (one connection each), before
    // they become the dataset's.
    const chunkStats = all.map((index): ChunkFigures => ({ table: chunkTable(index), gathered: taps.get(index)?.result() }));
    const counting = splitCounts(knex, chunkStats, signal);
    const [rowCounts, statistics] = await Promise.all([counting, trainStatistics(knex, chunkStats, features, options.maxCategories ?? 1000, async () => (await counting).train, signal)]);
    if (rowCounts.train === 0) throw new FtiError(FailureType.InvalidInput, `the train split of ${def.name} between ${start.toISOString()} and ${validationStart.toISOString()} is empty`);
    stageDone('statistics');
    return await cancellableTransaction(knex, signal, async (trx) => {
      const [row] = await trx<TrainingDatasetRow>('training_datasets')
        .insert({ feature_view_id: view.id, idempotency_key: options.idempotencyKey, status: 'creating', workflow_id: options.workflowId ?? null })
        .returning('*');
      if (!row) throw new Error('insert into training_datasets returned no row');
      const table = datasetTable(row.id);
      await raw(trx, sql`drop table if exists ${id(table)}`);
      await raw(trx, sql`create table ${id(table)} (like ${id(chunkTable(0))}) partition by list (_chunk)`);
      for (let index = 0; index < chunks; index++) {
        const part = `${table}_${index}`;
        await raw(trx, sql`alter table ${id(chunkTable(index))} rename to ${id(part)}`);
        await raw(trx, sql`alter table ${id(table)} attach partition ${id(part)} for values in (${int(index)})`);
      }
      stageDone('attach');
      await trx('training_dataset_commits').insert(snapshot.commits.map((c) => ({ training_dataset_id: row.id, feature_group: c.featureGroup, feature_group_version: c.version, commit_id: c.commitId })));
      const [ready] = await trx<TrainingDatasetRow>('training_datasets')
        .where({ id: row.id })
        .update({
          status: 'ready',
          table_name: table,
          window_start: start,
          window_end: end,
          validation_start: validationStart,
          test_start: testStart,
          row_counts: JSON.stringify(rowCounts) as unknown as Record<Split, number>,
          statistics: JSON.stringify(statistics) as unknown as Record<string, FeatureStats>,
          finished_at: new Date(),
        })
        .returning('*');
      return toTrainingDataset(trx, ready as TrainingDatasetRow);
    });
  } catch (err) {
    // Chunks are kept for a retry; not when none will come (cancelled, or a failure retrying cannot fix).
    // (Postgres may be what failed: then fti gc reaps them later.)
    if (signal?.aborted || err instanceof FtiError) await drop(await leftovers()).catch(() => undefined);
    throw err;
  }
}

/** How the server prints dates and stores text (what computing the shuffle key in Node depends on). */
async function serverText(knex: Knex): Promise<ServerText> {
  const result = (await knex.raw(`select current_setting('DateStyle') as date_style, current_setting('server_encoding') as encoding`)) as { rows: Array<{ date_style: string; encoding: string }> };
  const row = result.rows[0];
  if (!row) throw new Error('the server told nothing of its DateStyle');
  return { dateStyle: row.date_style, encoding: row.encoding };
}

/** The split as a spine read from segments computes it (ExtraColumn.fromTime): the same as its SQL, a null time in the test split. */
function splitByTime(eventTime: string, validationStart: Date, testStart: Date): ExtraColumn['fromTime'] {
  const [train, validation, test] = (['train', 'validation', 'test'] as const).map((s) => new Uint8Array(Buffer.from(s, 'utf8')));
  return { column: eventTime, cuts: { cuts: [validationStart.getTime() * 1000, testStart.getTime() * 1000], fields: [train as Uint8Array, validation as Uint8Array, test as Uint8Array] } };
}

/** The view's labelled spine rows in the snapshot (in [start, end) if given): how many, the first's and last's event times. */
function spineRange(knex: Knex, def: FeatureViewDefinition, snapshot: ViewSnapshot, window: { start?: Date; end?: Date } = {}): Promise<SpineRange> {
  return labelledSpineRange(knex, viewQuery(def, snapshot, { ...window, withLabel: true, strategy: 'lateral' }));
}

/**
 * The spine window [start, end) (as given, else the spine rows' own time range) and its
 * split boundaries; when the window is the spine's whole range, its row count too (read
 * in the same scan).
 */
async function datasetWindow(
  knex: Knex,
  def: FeatureViewDefinition,
  snapshot: ViewSnapshot,
  options: CreateTrainingDatasetOptions,
): Promise<{ start: Date; end: Date; validationStart: Date; testStart: Date; spineRows?: number }> {
  let start = options.start;
  let end = options.end;
  let spineRows: number | undefined;
  if (!start || !end) {
    const range = await spineRange(knex, def, snapshot);
    if (!start && !end) spineRows = range.rows;
    if (range.first === null || range.last === null) throw new FtiError(FailureType.InvalidInput, `feature view ${def.name} has no labelled spine rows${start || end ? ' in the window' : ''}`);
    // Milliseconds, as a Date holds them: the first rounded down, the end a millisecond after the last's.
    start ??= new Date(Math.floor(range.first / 1000));
    end ??= new Date(Math.floor(range.last / 1000) + 1);
  }
  const span = end.getTime() - start.getTime();
  const validationStart = options.validationStart ?? new Date(start.getTime() + span * 0.8);
  const testStart = options.testStart ?? new Date(start.getTime() + span * 0.9);
  if (!(start < validationStart && validationStart <= testStart && testStart < end)) {
    throw new FtiError(FailureType.InvalidInput, `splits must satisfy start < validationStart <= testStart < end (got ${start.toISOString()}, ${validationStart.toISOString()}, ${testStart.toISOString()}, ${end.toISOString()})`);
  }
  return { start, end, validationStart, testStart, spineRows };
}

/** Train splits larger than this fit their bins' quantiles on a fixed eighth of their rows (by shuffle key): the same edges to a few parts per thousand, for an eighth of the sorting. */
const QUANTILE_SAMPLE_ABOVE = 200_000;

/** The features a dataset keeps statistics of, by kind: quantiles for bins, categories for one_hot, moments for the rest. */
interface StatisticsFeatures {
  binned: Array<{ name: string; type: string; bins: number }>;
  numeric: Array<{ name: string; type: string }>;
  oneHot: Array<{ name: string; maxCategories?: number }>;
}

function statisticsFeatures(def: FeatureViewDefinition): StatisticsFeatures {
  return {
    binned: def.features.flatMap((f) => (f.encoding.encoding === 'bins' ? [{ name: f.name, type: f.type, bins: f.encoding.bins ?? 16 }] : [])),
    numeric: def.features.filter((f) => f.encoding.encoding !== 'one_hot' && f.encoding.encoding !== 'bins').map((f) => ({ name: f.name, type: f.type })),
    oneHot: def.features.flatMap((f) => (f.encoding.encoding === 'one_hot' ? [{ name: f.name, maxCategories: f.encoding.maxCategories }] : [])),
  };
}

/** A chunk's table, and what its rows gave as the stream plan wrote them (split-statistics.ts), if it did. */
interface ChunkFigures {
  table: string;
  gathered?: ChunkStatistics;
}

/** Statistics of each feature over the train split: the input of fitSignature. */
async function trainStatistics(
  knex: Knex,
  chunks: readonly ChunkFigures[],
  { binned, numeric, oneHot }: StatisticsFeatures,
  maxCategories: number,
  trainRows: () => Promise<number>,
  signal: AbortSignal | undefined,
): Promise<Record<string, FeatureStats>> {
  const stats: Record<string, FeatureStats> = {};
  const query = <T>(work: (trx: Knex.Transaction) => Promise<T>) => cancellableTransaction(knex, signal, work);
  const tables = chunks.map((c) => c.table);
  /** The train rows of every table, as one relation. */
  const train = (columns: Sql, where: Sql = sql``) => join(tables.map((t) => sql`select ${columns} from ${id(t)} where _split = 'train'${where}`), ' union all ');
  const quantiles = async () => {
    if (!binned.length) return;
    const value = (f: { name: string; type: string }) => (f.type === 'bool' ? sql`(${id(f.name)})::int::double precision` : sql`(${id(f.name)})::double precision`);
    const parts = binned.flatMap((f, i) => {
      const fractions = Array.from({ length: f.bins + 1 }, (_, k) => k / f.bins);
      return [sql`count(${id(`v${i}`)})::bigint as ${id(`c${i}`)}`, sql`percentile_disc(${fractions}::double precision[]) within group (order by ${id(`v${i}`)}) as ${id(`q${i}`)}`];
    });
    // Whether to sample waits for the split counts, which run beside the other statistics.
    const sample = (await trainRows()) > QUANTILE_SAMPLE_ABOVE ? sql` and (_shuffle & 7) = 0` : sql``;
    const values = join(binned.map((f, i) => sql`${value(f)} as ${id(`v${i}`)}`), ', ');
    const row = ((await query((trx) => raw(trx, sql`select ${join(parts, ', ')} from (${train(values, sample)}) t`))) as { rows: Array<Record<string, unknown>> }).rows[0] ?? {};
    binned.forEach((f, i) => {
      const q = (row[`q${i}`] as Array<number | null> | null) ?? [];
      stats[f.name] = { count: Number(row[`c${i}`] ?? 0), quantiles: q.filter((x): x is number => x !== null) };
    });
  };
  const moments = async () => {
    // Each table's on its own connection (or as gathered), then combined in the tables' order: the same numbers every time.
    const partial = await Promise.all(chunks.map((c) => c.gathered?.moments ?? query((trx) => trainMoments(trx, c.table, numeric))));
    for (const f of numeric) stats[f.name] = combineMoments(partial.map((p) => p[f.name] as NumericStats));
  };
  const categories = () =>
    Promise.all(
      oneHot.map(async (f) => {
        const limit = Math.min(f.maxCategories ?? maxCategories, maxCategories);
        // Each table's train rows per value (as gathered, or counted on its own connection), added up.
        const perTable = await Promise.all(
          chunks.map(
            async (c) =>
              c.gathered?.categories?.[f.name] ??
              new Map(
                (
                  (await query((trx) =>
                    raw(trx, sql`select ${id(f.name)}::text as value, count(*)::bigint as n from ${id(c.table)} where _split = 'train' and ${id(f.name)} is not null group by 1`),
                  )) as { rows: Array<{ value: string; n: string | number }> }
                ).rows.map((r) => [r.value, Number(r.n)]),
              ),
          ),
        );
        const counts = new Map<string, number>();
        for (const table of perTable) for (const [value, n] of table) counts.set(value, (counts.get(value) ?? 0) + n);
        if (counts.size === 0) {
          stats[f.name] = { categories: [] };
          return;
        }
        // The most frequent first, ties by the database's collation: the order a group by over all the tables gives.
        const ranked = (await raw(knex, sql`select value from unnest(${[...counts.keys()]}::text[], ${[...counts.values()]}::bigint[]) as t(value, n) order by n desc, value limit ${limit}`)) as {
          rows: Array<{ value: string }>;
        };
        stats[f.name] = { categories: ranked.rows.map((r) => r.value) };
      }),
    );
  await Promise.all([quantiles(), moments(), categories()]);
  // Binned features first, then numeric, then one-hot: the order they came in when computed one after another.
  return Object.fromEntries([...binned, ...numeric, ...oneHot].flatMap((f) => (stats[f.name] ? [[f.name, stats[f.name] as FeatureStats]] : [])));
}

/** The rows of each split in the chunks' tables: as gathered, or counted side by side (a connection each). */
async function splitCounts(knex: Knex, chunks: readonly ChunkFigures[], signal: AbortSignal | undefined): Promise<Record<Split, number>> {
  const each = await Promise.all(
    chunks.map(async (c): Promise<Partial<Record<Split, number>>> => {
      if (c.gathered) return c.gathered.counts;
      const result = (await cancellableTransaction(knex, signal, (trx) => raw(trx, sql`select _split, count(*)::bigint as n from ${id(c.table)} group by 1`))) as { rows: Array<{ _split: Split; n: string | number }> };
      return Object.fromEntries(result.rows.map((r) => [r._split, Number(r.n)]));
    }),
  );
  const counts: Record<Split, number> = { train: 0, validation: 0, test: 0 };
  for (const chunk of each) for (const split of Object.keys(counts) as Split[]) counts[split] += chunk[split] ?? 0;
  return counts;
}

/**
 * Count, mean and population standard deviation of each feature over the train split,
 * in `trx` (a transaction): what standardize encodes with, so they must come out the
 * same, bit for bit, every time the same rows are read. A parallel aggregate does not:
 * its workers take blocks as they come, and their float sums, added in another order,
 * differ in the last digits from run to run (six runs of 3M rows, six different means).
 * So this one statement runs in one process, reading the table from its first block
 * (no synchronized scan starting where another scan is), and the settings are put back.
 */
export async function trainMoments(trx: Knex, table: string, features: ReadonlyArray<{ name: string; type: string }>): Promise<Record<string, NumericStats>> {
  if (features.length === 0) return {};
  // The settings are the transaction's own (set_config local): outside one they would end with their statement.
  if (!trx.isTransaction) throw new Error('trainMoments runs in a transaction');
  const parts = features.flatMap((f, i) => {
    const x = f.type === 'bool' ? sql`(${id(f.name)})::int` : sql`(${id(f.name)})::double precision`;
    return [sql`count(${x})::bigint as ${id(`c${i}`)}`, sql`avg(${x})::double precision as ${id(`m${i}`)}`, sql`stddev_pop(${x})::double precision as ${id(`s${i}`)}`];
  });
  const settings = ['max_parallel_workers_per_gather', 'synchronize_seqscans'];
  const before = ((await trx.raw(`select ${settings.map((name) => `current_setting('${name}') as ${name}`).join(', ')}`)) as { rows: Array<Record<string, string>> }).rows[0] ?? {};
  await trx.raw(`select set_config('max_parallel_workers_per_gather', '0', true), set_config('synchronize_seqscans', 'off', true)`);
  const row = ((await raw(trx, sql`select ${join(parts, ', ')} from ${id(table)} where _split = 'train'`)) as { rows: Array<Record<string, number | null>> }).rows[0] ?? {};
  await trx.raw(`select ${settings.map(() => 'set_config(?, ?, true)').join(', ')}`, settings.flatMap((name) => [name, before[name] ?? '']));
  return Object.fromEntries(features.map((f, i) => [f.name, { count: Number(row[`c${i}`] ?? 0), mean: row[`m${i}`] ?? 0, std: row[`s${i}`] ?? 0 }]));
}

async function toTrainingDataset(knex: Knex, row: TrainingDatasetRow): Promise<TrainingDataset> {
  const commits = await knex('training_dataset_commits').where({ training_dataset_id: row.id }).orderBy(['feature_group', 'feature_group_version']);
  return {
    id: row.id,
    featureViewId: row.feature_view_id,
    status: row.status,
    tableName: row.table_name,
    windowStart: row.window_start,
    windowEnd: row.window_end,
    validationStart: row.validation_start,
    testStart: row.test_start,
    rowCounts: row.row_counts,
    statistics: row.statistics,
    commits: commits.map((c: { feature_group: string; feature_group_version: number; commit_id: number }) => ({ featureGroup: c.feature_group, version: c.feature_group_version, commitId: Number(c.commit_id) })),
    workflowId: row.workflow_id,
    createdAt: row.created_at,
  };
}

export async function getTrainingDataset(knex: Knex, datasetId: number): Promise<TrainingDataset> {
  const row = await knex<TrainingDatasetRow>('training_datasets').where({ id: datasetId }).first();
  if (!row) throw new FtiError(FailureType.NotFound, `training dataset ${datasetId} does not exist`);
  if (row.status === 'reaped') {
    throw new FtiError(
      FailureType.NotFound,
      `training dataset ${datasetId} was reaped by fti gc${row.reaped_at ? ` at ${row.reaped_at.toISOString()}` : ''}: no model version was registered from it and it was older than the retention, so its table ${row.table_name ?? datasetTable(datasetId)} was dropped; build a new dataset (run the training pipeline without trainingDatasetId)`,
      { trainingDatasetId: datasetId, status: 'reaped' },
    );
  }
  if (row.status !== 'ready') throw new FtiError(FailureType.Conflict, `training dataset ${datasetId} is ${row.status}, not ready`);
  return toTrainingDataset(knex, row);
}

/**
 * A split's rows in batches, in shuffled order: each partition of the dataset's table
 * read in its stored order (that order) by binary COPY of page ranges, all in one
 * transaction on one connection (registry/db/copy-reads.ts), merged by the shuffle key
 * (ties by partition). Rows carry that key too, as `_shuffle` (dropping it from every
 * row would cost more than the merge). A dataset built before its table was
 * partitioned is read as stored.
 */
export async function* streamSplit(knex: Knex, dataset: TrainingDataset, split: Split, columns: string[], batchSize = 4096): AsyncGenerator<Array<Record<string, unknown>>> {
  const parts = await partitionsOf(knex, dataset.tableName);
  const tables = parts.length === 0 ? [dataset.tableName] : parts;
  // Merged by shuffle key when there are partitions: each is stored in that order.
  const selected = parts.length === 0 || columns.includes('_shuffle') ? columns : [...columns, '_shuffle'];
  const where = sql`_split = ${split}`;
  // By binary COPY where every column's type decodes (every column a dataset stores), else by cursor.
  const streams =
    (await streamTablesInStoredOrder(
      knex,
      tables.map((table) => ({ table, columns: selected, where })),
      { batchSize },
    )) ??
    streamQueries<Record<string, unknown>>(
      knex,
      tables.map((table) => {
        const native = toNative(knex, sql`select ${ids(selected)} from ${id(table)} where ${where}`);
        return { sql: native.sql, params: native.bindings };
      }),
      batchSize,
    );
  if (streams.length === 1) yield* streams[0] as AsyncGenerator<Array<Record<string, unknown>>>;
  else yield* mergeBy(streams, (row) => row._shuffle as number, batchSize);
}

/** The partitions of a table, by name (none for a table that is not partitioned). */
async function partitionsOf(knex: Knex, table: string): Promise<string[]> {
  const result = (await raw(
    knex,
    sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
        where i.inhparent = to_regclass(${table}) order by c.relname`,
  )) as { rows: Array<{ name: string }> };
  return result.rows.map((r) => r.name);
}

/** Another feature view to read a split's spine rows through, as of a snapshot of its groups. */
export interface ThroughView {
  view: FeatureViewDefinition;
  snapshot: ViewSnapshot;
  strategy: PitStrategy;
}

/** One row of a split (the columns asked for) and the other view's features for the same spine row. */
export interface SplitRowThroughView {
  row: Record<string, unknown>;
  viewRow: Record<string, unknown>;
}

/**
 * A split's rows, each beside the features another feature view computes for the same
 * spine row (its entity keys and event time), point-in-time as of `through.snapshot`:
 * what a model trained on that view sees for the rows of this dataset. Only rows the
 * other view's spine holds too come back. Both views' spines must have the same entity
 * keys and event time column (InvalidInput otherwise); the join runs in Postgres.
 */
export async function* streamSplitThroughView(
  knex: Knex,
  dataset: TrainingDataset,
  datasetView: FeatureViewDefinition,
  split: Split,
  columns: string[],
  through: ThroughView,
  batchSize = 4096,
): AsyncGenerator<SplitRowThroughView[]> {
  const own = datasetView.spine;
  const other = through.view.spine;
  const sameKeys = own.entityKeys.length === other.entityKeys.length && own.entityKeys.every((k) => other.entityKeys.includes(k));
  if (!sameKeys || own.eventTime !== other.eventTime) {
    throw new FtiError(
      FailureType.InvalidInput,
      `feature view ${through.view.name} v${through.view.version} has another spine (${other.group} v${other.version} keyed by ${other.entityKeys.join(', ')} at ${other.eventTime}) ` +
        `than training dataset ${dataset.id} (${own.group} v${own.version} keyed by ${own.entityKeys.join(', ')} at ${own.eventTime}): it cannot be read for the same rows`,
      { trainingDatasetId: dataset.id, featureView: { name: through.view.name, version: through.view.version } },
    );
  }
  const range = splitRange(dataset, split);
  const viewRows = pointInTimeSql(viewQuery(through.view, through.snapshot, { start: range.start, end: range.end, withLabel: false, strategy: through.strategy }));
  // Positional aliases: a feature of the other view may share a name with a column of the dataset.
  const features = through.view.features.map((f, i) => ({ name: f.name, as: `_v${i}` }));
  const on = join([...own.entityKeys, own.eventTime].map((k) => sql`${col('v', k)} = ${col('d', k)}`), ' and ');
  const query = sql`select ${cols('d', columns)}, ${join(features.map((f) => sql`${col('v', f.name)} as ${id(f.as)}`), ', ')}
                    from ${id(dataset.tableName)} d join (${viewRows}) v on ${on}
                    where d._split = ${split}`;
  const native = toNative(knex, query);
  for await (const batch of streamQuery<Record<string, unknown>>(knex, native.sql, native.bindings, batchSize)) {
    yield batch.map((r) => ({
      row: Object.fromEntries(columns.map((c) => [c, r[c]])),
      viewRow: Object.fromEntries(features.map((f) => [f.name, r[f.as]])),
    }));
  }
}

/** The event-time range [start, end) of a split. */
function splitRange(dataset: TrainingDataset, split: Split): { start: Date; end: Date } {
  switch (split) {
    case 'train':
      return { start: dataset.windowStart, end: dataset.validationStart };
    case 'validation':
      return { start: dataset.validationStart, end: dataset.testStart };
    case 'test':
      return { start: dataset.testStart, end: dataset.windowEnd };
  }
}

/** Which datasets read a commit (lineage). */
export async function datasetsUsingCommit(knex: Knex, commit: FeatureGroupCommitRef): Promise<number[]> {
  const rows = await knex('training_dataset_commits').where({ feature_group: commit.featureGroup, feature_group_version: commit.version, commit_id: commit.commitId }).orderBy('training_dataset_id');
  return rows.map((r: { training_dataset_id: number }) => Number(r.training_dataset_id));
}
