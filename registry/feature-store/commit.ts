/**
 * "Make visible": the one transaction that turns a commit attempt's staged rows
 * into a commit, or fails it leaving the store as it was.
 *
 *   1. expectations      rows failing them go to feature_rejects with reasons
 *   2. duplicates        one row per entity key + event time (a unique index on the
 *                        commit's table; duplicates are rejected, the last row wins
 *                        unless the group expects unique keys)
 *   strict policy: any rejected row fails the attempt here; nothing becomes visible
 *   quarantine policy: more rejects than `maxRejectRatio` of the rows fails it too
 *   either: rows read but none left to commit fails it (not a "committed" of nothing)
 *   (a failed attempt keeps its rejects, with their reasons, in feature_rejects)
 *   3. statistics        per feature, over the commit's valid rows
 *   4. overlap           rows already visible unchanged are dropped from the commit
 *                        (a re-run adds nothing); changed rows supersede the old
 *                        ones, which move to the history table (time travel)
 *   5. online            latest row per entity upserted from the staging table; an
 *                        older (late) row never overwrites a newer one
 *   6. store             the commit's rows move into the offline table's event-time
 *                        range partitions (a new range's partition is created), and
 *                        its staging table is dropped
 *
 * A windowed group (aggregates, whose rows are change points) differs in two steps:
 * its rows at or after the run's window end are set aside first (the known future of
 * its windows, for the online store only: a later window's run computes them for the
 * history), and its online store is updated before the overlap step, with each
 * entity's current change point and the future ones.
 */
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { FtiError, FailureType } from '../../core/errors.ts';
import type { Expectation, ValidationPolicy } from '../../features/definitions.ts';
import type { FeatureType } from '../../features/schema.ts';
import { col, cols, id, ids, join, isLockNotAvailable, kw, raw, sql, transaction, unlessUniqueViolation } from '../db/index.ts';
import { toFeatureCommit, type CommitRefusal, type FeatureCommit, type FeatureCommitRow, type ValidationReport } from './commits.ts';
import { reasonsExpression } from './expectations.ts';
import { endCommitAttempts, endPartitionAttempts, fenceCommitAttempt, toFeatureReject } from './staging.ts';
import { computeStatistics, storeStatistics } from './statistics.ts';
import { dropCommitTable, featureColumns, groupTables, onlineKey, storeInRanges, valueColumns, type GroupShape } from './tables.ts';

export interface CommitRules {
  expectations: Expectation[];
  validation: ValidationPolicy;
  /** Under quarantine: the largest share of rejected rows (0 to 1); default 0.05. */
  maxRejectRatio?: number;
}

export const DEFAULT_MAX_REJECT_RATIO = 0.05;

export type CommitOutcome = { ok: true; commit: FeatureCommit } | { ok: false; commit: FeatureCommit; report: ValidationReport };

const SAMPLE_REJECTS = 20;

/**
 * Takes the group's commit lock until the transaction ends: commits of one group (and
 * compactions of its partitions) run one at a time. Group ids are numbered per schema,
 * advisory locks are per database: the key names the schema.
 */
export async function lockGroupCommits(trx: Knex.Transaction, featureGroupId: number): Promise<void> {
  await trx.raw('select pg_advisory_xact_lock(hashtext(? || current_schema()))', [`fti.feature_commit:${featureGroupId}@`]);
}

export async function commitStaged(knex: Knex, group: GroupShape & { id: number }, rules: CommitRules, commitId: number): Promise<CommitOutcome> {
  return transaction(knex, async (trx) => {
    // One attempt of this commit at a time: an earlier one still holding it (a stopped worker's) is ended.
    await fenceCommitAttempt(trx, commitId);
    // Commits of one group are serialised: each sees the previous one's rows.
    await lockGroupCommits(trx, group.id);
    const current = await trx<FeatureCommitRow>('feature_commits').where({ id: commitId }).forUpdate().first();
    if (!current) throw new FtiError(FailureType.NotFound, `feature commit ${commitId} does not exist`);
    if (current.feature_group_id !== group.id) throw new FtiError(FailureType.Conflict, `commit ${commitId} belongs to another feature group`);
    // A retry after a successful commit returns the same commit.
    if (current.status === 'committed') return { ok: true, commit: toFeatureCommit(current) };
    if (current.status === 'failed') {
      return { ok: false, commit: toFeatureCommit(current), report: current.validation_report ?? emptyReport(rules.validation) };
    }

    const t = groupTables(group.name, group.version);
    const stage = t.commit(commitId);
    // Wall time of each step, kept in the commit's report for monitoring and benchmarks.
    const timingsMs: Record<string, number> = {};
    const step = async <T>(name: string, work: () => Promise<T>): Promise<T> => {
      const started = performance.now();
      try {
        return await work();
      } finally {
        timingsMs[name] = Math.round(performance.now() - started);
      }
    };
    const types = Object.fromEntries(group.columns.map((c) => [c.name, c.type])) as Record<string, FeatureType>;
    // Sorts, hashes and index builds of big commits stay in memory (this transaction only).
    await trx.raw(`select set_config('work_mem', '256MB', true), set_config('maintenance_work_mem', '512MB', true)`);
    const windowEnd = group.windowed ? current.window_end : null;
    const future = windowEnd ? await step('future', () => setAsideFuture(trx, group, stage, commitId, windowEnd)) : undefined;

    const typeRejects = await countRejects(trx, commitId);
    const staged = await step('count', () => countRows(trx, stage));

    // 1. expectations
    const reasons = reasonsExpression(rules.expectations, types);
    if (reasons) {
      await step('expectations', () => raw(
        trx,
        sql`insert into feature_rejects (commit_id, row_number, reasons, row)
            select ${commitId}, _row_number, reasons, to_jsonb(s) - '_commit_id' - '_row_number' - '_available_at' - 'reasons'
            from (select *, ${reasons} as reasons from ${id(stage)}) s
            where cardinality(reasons) > 0
            on conflict do nothing`,
      ));
    }
    // 2. duplicates (the unique index is wanted for the partition anyway)
    await step('unique_index', () => rejectDuplicates(trx, group, stage, commitId, rules.expectations.some((e) => e.kind === 'unique_key')));

    const rejected = await countRejects(trx, commitId);
    const rowsIn = staged + typeRejects;
    const maxRejectRatio = rules.maxRejectRatio ?? DEFAULT_MAX_REJECT_RATIO;
    const refusal = refuse(rules.validation, maxRejectRatio, rowsIn, rejected);
    if (refusal) {
      const report = { ...(await buildReport(trx, commitId, rules.validation, rowsIn, rejected)), refusal, maxRejectRatio };
      const [failed] = await trx<FeatureCommitRow>('feature_commits')
        .where({ id: commitId })
        .update({
          status: 'failed',
          rows_in: rowsIn,
          rows_rejected: rejected,
          validation_report: JSON.stringify(report) as unknown as ValidationReport,
          error: refusalText(refusal, rowsIn, rejected, maxRejectRatio),
          finished_at: trx.fn.now() as unknown as Date,
        })
        .returning('*');
      await dropCommitTable(trx, group, commitId);
      return { ok: false, commit: toFeatureCommit(failed as FeatureCommitRow), report };
    }
    if (rejected > typeRejects) {
      await raw(trx, sql`delete from ${id(stage)} s using feature_rejects r where r.commit_id = ${commitId} and r.row_number = s._row_number`);
    }
    const rowsValid = rowsIn - rejected;
    if (group.windowed && group.online) await step('online', () => updateWindowedOnline(trx, group, stage, future, windowEnd));

    // 3. statistics of the commit's valid rows (the event time's give the commit's time range)
    const statistics = await step('statistics', () => computeStatistics(trx, stage, group.columns));
    await storeStatistics(trx, commitId, statistics);
    const times = statistics.find((x) => x.feature === group.eventTime);
    // To the millisecond, widened outward: event times keep microseconds (an aggregate's
    // row is stored 1 µs before the instant it takes effect) and a Date does not. Cut inward, the last
    // row's own stored copy fell outside the range a re-run compares in, and was inserted
    // a second time (a unique violation on the re-run of a stored window).
    const ms = (epochSeconds: number, round: (x: number) => number) => new Date(round(Math.round(epochSeconds * 1e6) / 1000));
    const range = { lo: times?.min == null ? null : ms(times.min, Math.floor), hi: times?.max == null ? null : ms(times.max, Math.ceil) };

    // 4. overlap with what is already visible
    const { unchanged, updated } = range.lo && range.hi ? await step('overlap', () => supersede(trx, group, stage, commitId, rowsValid, range.lo as Date, range.hi as Date)) : { unchanged: 0, updated: 0 };
    const inserted = rowsValid - unchanged - updated;

    // 4b. late rows: a row for a window already committed became known only now.
    const visibleAt = ((await trx.raw('select clock_timestamp() as t')) as { rows: Array<{ t: Date }> }).rows[0]?.t as Date;
    if (range.lo && range.hi && rowsValid - unchanged > 0) await step('late', () => markLate(trx, group, stage, commitId, visibleAt, range.lo as Date, range.hi as Date));

    // 4c. how long its rows took to become known: bounds what point-in-time reads must scan (knownLagMs)
    const knownLagMs = rowsValid - unchanged > 0 ? await step('lag', () => maxKnownLagMs(trx, group, stage)) : 0;

    // 5. online store (from the staging table, unique on keys and event time)
    if (group.online && !group.windowed && rowsValid - unchanged > 0) await step('online', () => upsertOnline(trx, group, stage));

    // 6. into the range partitions (after the online store, which reads the staging table)
    if (rowsValid - unchanged > 0) await step('store', () => storeInRanges(trx, group, stage));
    await dropCommitTable(trx, group, commitId);

    const report = { ...(await buildReport(trx, commitId, rules.validation, rowsIn, rejected)), timingsMs };
    const [committed] = await trx<FeatureCommitRow>('feature_commits')
      .where({ id: commitId })
      .update({
        status: 'committed',
        rows_in: rowsIn,
        rows_committed: rowsValid,
        rows_inserted: inserted,
        rows_updated: updated,
        rows_unchanged: unchanged,
        rows_rejected: rejected,
        min_event_time: range.lo,
        max_event_time: range.hi,
        max_known_lag_ms: knownLagMs,
        validation_report: JSON.stringify(report) as unknown as ValidationReport,
        finished_at: trx.fn.now() as unknown as Date,
        // Its place in visibility order, taken under the group's lock: the order snapshots follow.
        visible_seq: trx.raw(`nextval('feature_commit_visible_seq')`) as unknown as number,
        visible_at: visibleAt,
      })
      .returning('*');
    return { ok: true, commit: toFeatureCommit(committed as FeatureCommitRow) };
  });
}

/** Whether (and why) a commit of `rowsIn` rows with `rejected` rejects is refused. */
function refuse(policy: ValidationPolicy, maxRejectRatio: number, rowsIn: number, rejected: number): CommitRefusal | undefined {
  if (rejected > 0 && policy === 'strict') return 'strict';
  if (rowsIn > 0 && rejected >= rowsIn) return 'no_rows';
  if (rowsIn > 0 && rejected / rowsIn > maxRejectRatio) return 'reject_ratio';
  return undefined;
}

function refusalText(refusal: CommitRefusal, rowsIn: number, rejected: number, maxRejectRatio: number): string {
  switch (refusal) {
    case 'strict':
      return `${rejected} of ${rowsIn} rows failed validation (strict)`;
    case 'no_rows':
      return `no row to commit: all ${rowsIn} rows read were rejected`;
    case 'reject_ratio':
      return `${rejected} of ${rowsIn} rows were rejected (${percent(rejected / rowsIn)}), more than the maximum reject ratio ${percent(maxRejectRatio)} (quarantine)`;
  }
}

function percent(ratio: number): string {
  return `${Number((ratio * 100).toFixed(1))}%`;
}

/** Marks an attempt failed (e.g. the workflow gave up) and drops its staged rows. */
export async function abortCommit(knex: Knex, group: GroupShape, commitId: number, error: string): Promise<void> {
  const failAndDrop = async (trx: Knex.Transaction) => {
    const updated = await trx('feature_commits').where({ id: commitId, status: 'staging' }).update({ status: 'failed', error, finished_at: trx.fn.now() });
    if (updated) await dropCommitTable(trx, group, commitId);
  };
  // Attempts still writing hold the commit's row (FOR SHARE, or FOR UPDATE: a stopped
  // commit attempt) and its table: they are ended first (a stalled one may never hear a
  // cancel), so neither the update nor the drop waits behind them. One that starts
  // meanwhile makes the update time out: again.
  const endAttempts = async (db: Knex) => {
    await endPartitionAttempts(db, commitId);
    await endCommitAttempts(db, commitId);
  };
  if (knex.isTransaction) {
    await endAttempts(knex);
    return failAndDrop(knex as Knex.Transaction);
  }
  for (let round = 1; ; round++) {
    await endAttempts(knex);
    try {
      await transaction(knex, async (trx) => {
        await trx.raw(`select set_config('lock_timeout', '1s', true)`);
        await failAndDrop(trx);
      });
      return;
    } catch (err) {
      if (round >= 10 || !isLockNotAvailable(err)) throw err;
    }
  }
}

async function countRows(knex: Knex, table: string): Promise<number> {
  const result = (await raw(knex, sql`select count(*)::bigint as n from ${id(table)}`)) as { rows: Array<{ n: number }> };
  return result.rows[0]?.n ?? 0;
}

async function countRejects(knex: Knex, commitId: number): Promise<number> {
  const row = await knex('feature_rejects').where({ commit_id: commitId }).count<{ n: string | number }[]>({ n: '*' }).first();
  return Number(row?.n ?? 0);
}

/**
 * Builds the commit table's unique (keys, event time) index. Duplicates make it
 * fail; then they are rejected (all of them when keys must be unique, else all but
 * the last by source row) and the index is built again.
 */
async function rejectDuplicates(trx: Knex.Transaction, group: GroupShape, stage: string, commitId: number, keysMustBeUnique: boolean): Promise<void> {
  const key = [...group.entityKeys, group.eventTime];
  const createIndex = sql`create unique index ${id(`${stage}_key`)} on ${id(stage)} (${ids(key)})`;
  if (await unlessUniqueViolation(trx, (savepoint) => raw(savepoint, createIndex).then(() => {}))) return;
  const keyText = join(key.map((k) => sql`${id(k)}::text`), ` || ', ' || `);
  const reason = keysMustBeUnique
    ? sql`'key: duplicate entity key and event time (' || ${keyText} || '), which must be unique'`
    : sql`'key: superseded by row ' || last_row || ' with the same entity key and event time (' || ${keyText} || ')'`;
  await raw(
    trx,
    sql`insert into feature_rejects (commit_id, row_number, reasons, row)
        select ${commitId}, _row_number, array[${reason}], to_jsonb(d) - '_commit_id' - '_row_number' - '_available_at' - 'n' - 'last_row'
        from (select *, count(*) over k as n, max(_row_number) over k as last_row from ${id(stage)} window k as (partition by ${ids(key)})) d
        where n > 1 and (${keysMustBeUnique} or _row_number < last_row)
        on conflict do nothing`,
  );
  await raw(trx, sql`delete from ${id(stage)} s using feature_rejects r where r.commit_id = ${commitId} and r.row_number = s._row_number`);
  await raw(trx, createIndex);
}

/**
 * Rows of this commit that are already visible with the same values are dropped
 * from it (unchanged); visible rows whose values differ move to the history table,
 * superseded by this commit (updated). Only runs when the time ranges overlap.
 */
/** `staged`: the staging table's rows (the commit's valid rows: rejects are deleted from it before this). */
async function supersede(trx: Knex.Transaction, group: GroupShape & { id: number }, stage: string, commitId: number, staged: number, lo: Date, hi: Date): Promise<{ unchanged: number; updated: number }> {
  const overlaps = await trx('feature_commits')
    .where({ feature_group_id: group.id, status: 'committed' })
    .andWhere('min_event_time', '<=', hi)
    .andWhere('max_event_time', '>=', lo)
    .first();
  if (!overlaps) return { unchanged: 0, updated: 0 };
  const t = groupTables(group.name, group.version);
  const key = [...group.entityKeys, group.eventTime];
  const match = join(key.map((k) => sql`${col('o', k)} = ${col('s', k)}`), ' and ');
  const values = valueColumns(group);
  const same = values.length ? sql`(${cols('o', values)}) is not distinct from (${cols('s', values)})` : kw('true');
  // The commit's time range bounds the offline rows it can meet: only its ranges' partitions are read.
  const et = col('o', group.eventTime);
  const inRange = sql`${et} >= ${lo} and ${et} <= ${hi}`;
  // The staged rows not already stored as they are move into a new table that takes the
  // staging table's place (without its index and not-null marks, which nothing after this
  // needs), rather than the stored ones being deleted: a re-run of a window stores most of
  // its rows already, and deleting 8.5M airport rows one by one, each written to the WAL,
  // took 55 s, against 8.5 s for this (a parallel plan; an INSERT into a new table took 19 s).
  const kept = `${stage}__kept`;
  const { rowCount: changed } = (await raw(
    trx,
    sql`create table ${id(kept)} as select * from ${id(stage)} s where not exists (select 1 from ${id(t.offline)} o where ${match} and ${same} and ${inRange})`,
  )) as unknown as { rowCount: number };
  await raw(trx, sql`drop table ${id(stage)}`);
  await raw(trx, sql`alter table ${id(kept)} rename to ${id(stage)}`);
  const unchanged = staged - changed;
  const all = [...featureColumns(group), '_commit_id', '_row_number', '_available_at'];
  const updated = (await raw(
    trx,
    sql`with moved as (delete from ${id(t.offline)} o using ${id(stage)} s where ${match} and ${inRange} returning ${cols('o', all)})
        , kept as (insert into ${id(t.history)} (${ids(all)}, _superseded_by) select ${ids(all)}, ${commitId} from moved returning 1)
        select count(*)::bigint as n from kept`,
  )) as { rows: Array<{ n: number }> };
  return { unchanged, updated: updated.rows[0]?.n ?? 0 };
}

/** The longest any staged row took to become known, in whole milliseconds (rounded up), 0 for none. */
async function maxKnownLagMs(trx: Knex.Transaction, group: GroupShape, stage: string): Promise<number> {
  const result = (await raw(
    trx,
    // The longest interval, then its seconds: one numeric extract instead of one a row.
    sql`select coalesce(ceil(extract(epoch from max(s._available_at - ${col('s', group.eventTime)})) * 1000), 0)::bigint as ms from ${id(stage)} s`,
  )) as { rows: Array<{ ms: string | number }> };
  return Math.max(0, Number(result.rows[0]?.ms ?? 0));
}

/**
 * The watermark rule: a staged row whose event time lies in a window the group had
 * already committed (a late row, or a rerun's new or changed row) was not known when
 * that window became visible; it is known from this commit's visibility time, so it
 * never joins onto a spine row before it arrived. A first backfill has no earlier
 * windows and keeps the times its definition gives (event time plus lag).
 */
async function markLate(trx: Knex.Transaction, group: GroupShape & { id: number }, stage: string, commitId: number, visibleAt: Date, lo: Date, hi: Date): Promise<void> {
  const windows = sql`select coalesce(c.window_start, c.min_event_time) as lo, coalesce(c.window_end, c.max_event_time + interval '1 microsecond') as hi
                      from feature_commits c
                      where c.feature_group_id = ${group.id} and c.status = 'committed' and c.id <> ${commitId}
                        and coalesce(c.window_start, c.min_event_time) <= ${hi} and coalesce(c.window_end, c.max_event_time + interval '1 microsecond') > ${lo}`;
  const overlapping = (await raw(trx, sql`select count(*)::int as n from (${windows}) w`)) as { rows: Array<{ n: number }> };
  if (!overlapping.rows[0]?.n) return;
  const et = col('s', group.eventTime);
  await raw(
    trx,
    sql`update ${id(stage)} s set _available_at = greatest(s._available_at, ${visibleAt}::timestamptz)
        where exists (select 1 from (${windows}) w where ${et} >= w.lo and ${et} < w.hi)`,
  );
}

/**
 * Latest row per entity from this commit into the online table. An empty online
 * table (a first load) is filled in bulk and indexed afterwards, which is several
 * times faster than maintaining the primary key row by row.
 */
async function upsertOnline(trx: Knex.Transaction, group: GroupShape, stage: string): Promise<void> {
  const t = groupTables(group.name, group.version);
  const columns = [...featureColumns(group), '_commit_id'];
  const keys = group.entityKeys;
  const et = group.eventTime;
  // The commit table is unique on (keys, event time), so each entity's row at its
  // latest event time is its one latest row.
  const latest = sql`select ${cols('s', columns)} from ${id(stage)} s
    join (select ${ids(keys)}, max(${id(et)}) as _t from ${id(stage)} group by ${ids(keys)}) m
      on ${join(keys.map((k) => sql`${col('s', k)} = ${col('m', k)}`), ' and ')} and ${col('s', et)} = m._t`;

  const bulk = await startBulkOnlineLoad(trx, group);
  if (bulk) {
    // Entities that appear once in this commit (every flight is its own entity) need
    // no "latest" step at all; try that first when the statistics suggest it.
    if (await looksUnique(trx, stage, keys[0] as string)) {
      const loaded = await unlessUniqueViolation(trx, async (savepoint) => {
        await raw(savepoint, sql`insert into ${id(t.online)} (${ids(columns)}) select ${ids(columns)} from ${id(stage)}`);
        await bulk.finish(savepoint);
      });
      if (loaded) return;
    }
    await raw(trx, sql`insert into ${id(t.online)} (${ids(columns)}) ${latest}`);
    await bulk.finish(trx);
    return;
  }
  const updates = join(
    columns.filter((c) => !keys.includes(c)).map((c) => sql`${id(c)} = excluded.${id(c)}`),
    ', ',
  );
  await raw(
    trx,
    sql`insert into ${id(t.online)} as cur (${ids(columns)}) ${latest}
        on conflict (${ids(keys)}) do update set ${updates}
        where cur.${id(et)} <= excluded.${id(et)}`,
  );
}

/**
 * Moves a windowed group's staged rows at or after its window's end into a table of
 * this transaction (dropped at its end): they are not history, but the online store
 * needs them (an entity's windows go on changing after the last event, as events
 * fall out of them).
 */
async function setAsideFuture(trx: Knex.Transaction, group: GroupShape, stage: string, commitId: number, end: Date): Promise<string> {
  const future = `fti_future_c${commitId}`;
  const et = id(group.eventTime);
  await raw(trx, sql`create temp table ${id(future)} (like ${id(stage)}) on commit drop`);
  // Moved in one scan of the staged rows.
  await raw(trx, sql`with moved as (delete from ${id(stage)} where ${et} >= ${end} returning *) insert into ${id(future)} select * from moved`);
  return future;
}

/**
 * A windowed group's online store: per entity, the change point in force now and
 * those after it (the request-time lookup takes the latest one before the request).
 * Each entity this commit computed gets its points from the first one kept onward
 * replaced; points no longer in force are pruned. A run for a window that ends before
 * one already committed (an out-of-order backfill) leaves the online store alone: the
 * newer window knows more.
 */
async function updateWindowedOnline(trx: Knex.Transaction, group: GroupShape & { id: number }, stage: string, future: string | undefined, windowEnd: Date | null): Promise<void> {
  if (windowEnd) {
    const newer = await trx('feature_commits').where({ feature_group_id: group.id, status: 'committed' }).andWhere('window_end', '>', windowEnd).first();
    if (newer) return;
  }
  const t = groupTables(group.name, group.version);
  const columns = [...featureColumns(group), '_commit_id'];
  const keys = group.entityKeys;
  const et = id(group.eventTime);
  const now = ((await trx.raw('select clock_timestamp() as t')) as { rows: Array<{ t: Date }> }).rows[0]?.t as Date;
  const sameEntity = (a: string, b: string) => join(keys.map((k) => sql`${col(a, k)} = ${col(b, k)}`), ' and ');
  const tables = [stage, ...(future ? [future] : [])];
  const kept = `fti_online_c${group.id}`;
  // Per entity, the point in force now (its latest before now) over the staged and the
  // future points, from their keys and times only; then each table's points from it on.
  // (Not one union of whole rows referenced twice: Postgres materialised all of it.)
  const cur = sql`select ${ids(keys)}, max(${et}) as _cur
                  from (${join(tables.map((table) => sql`select ${ids(keys)}, ${et} from ${id(table)} where ${et} < ${now}`), ' union all ')}) x
                  group by ${ids(keys)}`;
  await raw(
    trx,
    sql`create temp table ${id(kept)} on commit drop as
        with cur as (${cur})
        ${join(
          tables.map((table) => sql`select ${cols('p', columns)} from ${id(table)} p left join cur c on ${sameEntity('p', 'c')} where c._cur is null or ${col('p', group.eventTime)} >= c._cur`),
          ' union all ',
        )}`,
  );
  // A first load (bulk) has nothing to replace or prune: every kept point is in force now or later.
  const bulk = await startBulkOnlineLoad(trx, group);
  if (!bulk) {
    await raw(
      trx,
      sql`delete from ${id(t.online)} o using (select ${ids(keys)}, min(${et}) as _lo from ${id(kept)} group by ${ids(keys)}) k
          where ${sameEntity('o', 'k')} and ${col('o', group.eventTime)} >= k._lo`,
    );
  }
  await raw(trx, sql`insert into ${id(t.online)} (${ids(columns)}) select ${ids(columns)} from ${id(kept)}`);
  if (bulk) await bulk.finish(trx);
  else {
    await raw(
      trx,
      sql`delete from ${id(t.online)} o using (
            select ${cols('i', keys)}, max(${col('i', group.eventTime)}) as _cur from ${id(t.online)} i
            where ${col('i', group.eventTime)} < ${now} and (${cols('i', keys)}) in (select ${ids(keys)} from ${id(kept)})
            group by ${cols('i', keys)}
          ) c
          where ${sameEntity('o', 'c')} and ${col('o', group.eventTime)} < c._cur`,
    );
  }
  await raw(trx, sql`drop table ${id(kept)}`);
}

/**
 * A first load of an empty online table, in bulk: the table is truncated (a new, empty
 * file of this transaction: on a wal_level=minimal server the load then skips the WAL)
 * and its primary key dropped, to be built once the rows are in (`finish`), which is
 * several times faster than maintaining it row by row. The 3M flights' first load went
 * from 4.1–4.8 s to 3.3 s with the truncate. Undefined when the table holds rows.
 * (Both take the table's exclusive lock, which readers of the empty table wait on.)
 */
async function startBulkOnlineLoad(trx: Knex.Transaction, group: GroupShape): Promise<{ finish(db: Knex.Transaction): Promise<void> } | undefined> {
  const t = groupTables(group.name, group.version);
  const empty = ((await raw(trx, sql`select not exists (select 1 from ${id(t.online)}) as empty`)) as { rows: Array<{ empty: boolean }> }).rows[0]?.empty;
  if (!empty) return undefined;
  await raw(trx, sql`truncate ${id(t.online)}`);
  const pk = ((await trx.raw(`select conname from pg_constraint where conrelid = ?::regclass and contype = 'p'`, [t.online])) as { rows: Array<{ conname: string }> }).rows[0]?.conname;
  if (pk) await raw(trx, sql`alter table ${id(t.online)} drop constraint ${id(pk)}`);
  return { finish: (db) => raw(db, sql`alter table ${id(t.online)} add primary key (${ids(onlineKey(group))})`).then(() => undefined) };
}

/** Whether ANALYZE's sample of the commit table saw every value of `column` once. */
async function looksUnique(trx: Knex.Transaction, table: string, column: string): Promise<boolean> {
  await raw(trx, sql`analyze ${id(table)} (${id(column)})`);
  const row = ((await trx.raw(`select n_distinct from pg_stats where schemaname = current_schema() and tablename = ? and attname = ?`, [table, column])) as { rows: Array<{ n_distinct: number }> }).rows[0];
  return row !== undefined && row.n_distinct <= -0.99;
}

async function buildReport(knex: Knex, commitId: number, policy: ValidationPolicy, rowsIn: number, rejected: number): Promise<ValidationReport> {
  // Every reason starts with the column (or `key`, `row`) it is about.
  const reasons = (await knex.raw(
    `select split_part(reason, ':', 1) as kind, count(*)::bigint as n
     from feature_rejects, unnest(reasons) as reason where commit_id = ? group by 1 order by 2 desc limit 50`,
    [commitId],
  )) as { rows: Array<{ kind: string; n: number }> };
  const sample = await knex('feature_rejects').where({ commit_id: commitId }).orderBy('row_number').limit(SAMPLE_REJECTS);
  return {
    policy,
    rowsIn,
    rowsRejected: rejected,
    reasons: Object.fromEntries(reasons.rows.map((r) => [r.kind, Number(r.n)])),
    sample: sample.map(toFeatureReject),
  };
}

function emptyReport(policy: ValidationPolicy): ValidationReport {
  return { policy, rowsIn: 0, rowsRejected: 0, reasons: {}, sample: [] };
}
