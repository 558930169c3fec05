/**
 * Real faults on real CPU worker processes: a feature run over 799,149 rows of the
 * flights Parquet file (three row-group partitions) loses and duplicates nothing when
 *
 *   1. its worker is SIGKILLed while the partitions COPY rows into the commit's table
 *      (and have already recorded rejects, which are committed beside the COPY);
 *   2. its worker is SIGKILLed while `commitFeatures` holds the commit transaction;
 *   3. its worker is SIGSTOPped mid-COPY (a zombie): the heartbeat times out, the retry
 *      runs on a second worker and ends the zombie's session (the partition's lease);
 *      the zombie is woken (SIGCONT) while the retry is still running;
 *   4. its worker is SIGSTOPped while `commitFeatures` holds the commit transaction (a zombie
 *      commit, idle in its transaction with the group's commit lock): the retry ends the
 *      zombie's session (the commit's lease) and commits while the zombie is still stopped;
 *   5. its worker is SIGKILLed while the run's plan, a local activity (workflows/local-steps.ts),
 *      waits inside the first workflow task: that task times out and a new worker runs the
 *      plan again (the commit attempt the dead one may have inserted is found by its key).
 *
 * Each time a new worker process finishes the run, and the committed group holds exactly
 * the source's rows of the window (counted here, independently, from the file), once each;
 * the rejects are exactly the rows made bad on purpose, once each; one commit, no staging
 * attempt, no leftover commit table, no advisory lock held. Every wait is for evidence
 * (a COPY in pg_stat_progress_copy, a lock in pg_locks, a pending activity's attempt),
 * never a sleep. Heartbeat timeout of partitions and commits: 30 s (workflows/feature-pipeline.ts).
 *
 * And the fence is per deployment: two schemas of one database, each writing its commit 1,
 * never take each other's partition leases (advisory locks are per database).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FeaturePipelineResult } from '../../activities/feature.ts';
import { progressQuery } from '../../core/progress.ts';
import { FLIGHTS_3M_PARQUET } from '../../examples/flights/data.ts';
import { defineFeatureGroup } from '../../features/definitions.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { featurePipeline } from '../../workflows/index.ts';
import { scratchFiles } from '../helpers/files.ts';
import { stepsOf } from '../helpers/histories.ts';
import { REPO_ROOT, spawnWorker, type WorkerProcess } from '../helpers/processes.ts';
import { createTestDb, createTestTemporal, uniqueId, type TestDb, type TestTemporal } from '../helpers/services.ts';

/** Three row groups of the file overlap it (rows 272,727 to 1,090,908); 799,149 rows fall inside. */
const WINDOW = { start: '2001-01-18T00:00:00.000Z', end: '2001-03-08T00:00:00.000Z' };
/** Every source row whose number ends in 007 is made bad by the transform: a reject with this reason. */
const BAD_EVERY = 1000;
const BAD_AT = 7;
const BAD_REASON = 'delay: expected a finite number, got "not-a-number"';
const GROUPS = ['kill_copy', 'kill_commit', 'zombie_copy', 'zombie_commit', 'kill_plan'] as const;
type GroupName = (typeof GROUPS)[number];
const SCENARIO_TIMEOUT_MS = 360_000;

const scratch = scratchFiles('worker-kill');
/**
 * The workers' definitions (FTI_DEFINITIONS): one group per scenario over the flights file,
 * keyed by the source row number, so the row set committed can be compared with the file's.
 */
const definitionsModule = scratch.file(
  'definitions.ts',
  `import { defineFeatureGroup } from ${JSON.stringify(path.join(REPO_ROOT, 'features/definitions.ts'))};
import { defineProject } from ${JSON.stringify(path.join(REPO_ROOT, 'features/project.ts'))};

const group = (name: string) =>
  defineFeatureGroup({
    name,
    version: 1,
    entityKeys: ['flight_id'],
    eventTime: 'event_time',
    features: { flight_id: 'int', event_time: 'timestamp', origin: 'string', destination: 'string', distance: 'float', delay: 'float' },
    source: { kind: 'parquet', path: ${JSON.stringify(FLIGHTS_3M_PARQUET)}, timeColumn: 'date' },
    sourceColumns: { date: 'timestamp', delay: 'float', distance: 'float', origin: 'string', destination: 'string' },
    validation: 'quarantine',
    transform: (raw, { rowNumber }) => ({
      flight_id: rowNumber,
      event_time: raw.date,
      origin: raw.origin,
      destination: raw.destination,
      distance: raw.distance,
      delay: rowNumber % ${BAD_EVERY} === ${BAD_AT} ? 'not-a-number' : raw.delay,
    }),
  });

export default defineProject({ featureGroups: ${JSON.stringify(GROUPS)}.map(group) });
`,
);

/** What the file says the run must commit, counted without the pipeline. */
interface Expected {
  rowsIn: number;
  rejectRows: number[];
  committed: number;
  /** Sum of the committed rows' source row numbers: with the count and distinctness, the exact row set. */
  committedRowNumberSum: number;
}

const PENDING_STARTED = 2; // temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

describe('feature runs survive killed and stalled CPU worker processes (real processes, signals, Temporal, Postgres)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let expected: Expected;
  const workers: WorkerProcess[] = [];

  const rows = async <T>(text: string, bindings: unknown[] = []): Promise<T[]> => ((await db.knex.raw(text, bindings as never)) as { rows: T[] }).rows;
  const one = async <T>(text: string, bindings: unknown[] = []): Promise<T> => {
    const [row] = await rows<T>(text, bindings);
    if (row === undefined) throw new Error(`no row from ${text}`);
    return row;
  };

  /** A CPU worker process on this suite's schema and queue, polling. */
  const startCpu = async (extra: Record<string, string> = {}): Promise<WorkerProcess> => {
    const worker = spawnWorker('cpu', { prefix: temporal.prefix, schema: db.schema, extra: { FTI_DEFINITIONS: definitionsModule, ...extra } });
    workers.push(worker);
    await worker.waitFor(/polling task queue/, 180_000);
    return worker;
  };
  const identityOf = (worker: WorkerProcess) => `${worker.process.pid}@`;

  const startRun = (featureGroup: GroupName) =>
    temporal.client.workflow.start(featurePipeline, { taskQueue: temporal.cpuQueue, workflowId: uniqueId(featureGroup), args: [{ featureGroup, version: 1, ...WINDOW }] });

  /** The run's commit attempt (planned by its first activity). */
  const commitOf = async (featureGroup: GroupName) =>
    (
      await rows<{ id: number; status: string; group_id: number }>(
        `select c.id, c.status, g.id as group_id from feature_commits c join feature_groups g on g.id = c.feature_group_id where g.name = ? and g.version = 1 order by c.id`,
        [featureGroup],
      )
    ).at(-1);

  /** COPYs into the group's commit tables now running in Postgres, by sessions of this suite's role. */
  const copies = (featureGroup: GroupName) =>
    rows<{ pid: number; rows: number; table: string }>(
      `select p.pid, p.tuples_processed::bigint::float8 as rows, c.relname as table
       from pg_stat_progress_copy p join pg_stat_activity a on a.pid = p.pid join pg_class c on c.oid = p.relid
       where a.usename = current_user and c.relname ~ ('^fg_' || ? || '_v1__c[0-9]+$')`,
      [featureGroup],
    );
  const alive = async (pids: number[]) => (await rows<{ pid: number }>(`select pid from pg_stat_activity where pid = any(?::int[])`, [`{${pids.join(',')}}`])).map((r) => r.pid);
  /** Sessions of this role holding the group's commit lock: `commitFeatures`' transaction. */
  const commitLockHolders = async (groupId: number) =>
    (
      await rows<{ pid: number }>(
        `select l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid
         where l.locktype = 'advisory' and l.granted and l.objsubid = 1 and a.usename = current_user
           and ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(? || current_schema())::bigint`,
        [`fti.feature_commit:${groupId}@`],
      )
    ).map((r) => r.pid);
  /** Partition leases of a commit (staging.ts: advisory lock (hash of the commit and schema, partition)) held by this role's sessions. */
  const partitionLeases = (commitId: number) =>
    rows<{ pid: number; partition: number }>(
      `select l.pid, l.objid::text::int as partition from pg_locks l join pg_stat_activity a on a.pid = l.pid
       where l.locktype = 'advisory' and l.granted and l.objsubid = 2 and a.usename = current_user
         and l.classid = (hashtext(? || current_schema()) & 2147483647)::oid`,
      [`fti.partition:${commitId}@`],
    );
  const rejectsOf = async (commitId: number) => (await one<{ n: number }>(`select count(*)::int as n from feature_rejects where commit_id = ?`, [commitId])).n;
  const tableRows = async (table: string) => (await one<{ n: number }>(`select count(*)::int as n from ??`, [table])).n;

  const pending = async (handle: WorkflowHandle) =>
    ((await handle.describe()).raw.pendingActivities ?? []).map((a) => ({
      id: a.activityId ?? '',
      type: a.activityType?.name ?? '',
      started: a.state === PENDING_STARTED,
      attempt: a.attempt ?? 1,
      worker: a.lastWorkerIdentity ?? '',
    }));

  /**
   * Waits until the run's commit transaction, on `worker`, is well into its work: the workflow
   * says 'commit', the session holds the group's commit lock, its unique index is built and it
   * is computing statistics (seconds of work on these rows, so polling sees it).
   */
  const commitInStatistics = (handle: WorkflowHandle, featureGroup: GroupName, worker: WorkerProcess) =>
    until(
      `the ${featureGroup} commit transaction to be computing statistics`,
      async () => {
        // A query is answered by the worker: one that times out under load is asked again.
        const progress = await temporal.client.withDeadline(Date.now() + 10_000, () => handle.query(progressQuery)).catch(() => undefined);
        if (progress?.stage !== 'commit') return undefined;
        const commit = await commitOf(featureGroup);
        if (!commit) return undefined;
        const [pid] = await commitLockHolders(commit.group_id);
        if (pid === undefined) return undefined;
        const { query } = await one<{ query: string }>(`select left(regexp_replace(query, '\\s+', ' ', 'g'), 120) as query from pg_stat_activity where pid = ?`, [pid]);
        if (!/stddev_samp|grouping sets|distinct_count/.test(query)) return undefined;
        const commits = (await pending(handle)).filter((a) => a.type === 'commitFeatures' && a.started && a.worker.startsWith(identityOf(worker)));
        return commits.length === 1 ? { commit, pid, query } : undefined;
      },
      180_000,
      50,
    );

  /** The highest attempt of each activity type in the run's history, and the failures that made the retries. */
  async function attempts(handle: WorkflowHandle): Promise<{ max: Record<string, number>; retriedAfter: string[] }> {
    const history = await handle.fetchHistory();
    const types = new Map<string, string>();
    const max: Record<string, number> = {};
    const retriedAfter: string[] = [];
    for (const e of history.events ?? []) {
      const scheduled = e.activityTaskScheduledEventAttributes;
      if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
      const started = e.activityTaskStartedEventAttributes;
      if (started) {
        const type = types.get(String(started.scheduledEventId)) ?? '?';
        max[type] = Math.max(max[type] ?? 0, started.attempt ?? 0);
        if (started.lastFailure?.message) retriedAfter.push(`${type}: ${started.lastFailure.message}`);
      }
    }
    return { max, retriedAfter };
  }

  /**
   * The committed group against the file: rows in, committed and rejected exactly as counted
   * from the source; each committed row once (key + event time, source row); rejects once each,
   * only the bad rows, none of them committed; one commit, its rows moved into the range partitions and its
   * staging table dropped: nothing staging or left over.
   */
  async function expectExact(featureGroup: GroupName, result: FeaturePipelineResult) {
    const offline = `fg_${featureGroup}_v1`;
    const counted = await one<{ rows: number; keys: number; row_numbers: number; row_number_sum: string; min_time: Date; max_time: Date }>(
      `select count(*)::int as rows, count(distinct (flight_id, event_time))::int as keys, count(distinct _row_number)::int as row_numbers,
              coalesce(sum(_row_number), 0)::text as row_number_sum, min(event_time) as min_time, max(event_time) as max_time
       from ??`,
      [offline],
    );
    const rejects = await rows<{ row_number: number; reasons: string[] }>(`select row_number::int as row_number, reasons from feature_rejects where commit_id = ? order by row_number`, [result.commitId]);
    const rejectedButCommitted = await one<{ n: number }>(`select count(*)::int as n from ?? o join feature_rejects r on r.commit_id = ? and r.row_number = o._row_number`, [offline, result.commitId]);
    const commits = await rows<{ id: number; status: string; rows_committed: number; rows_rejected: number }>(
      `select c.id, c.status, c.rows_committed, c.rows_rejected from feature_commits c join feature_groups g on g.id = c.feature_group_id where g.name = ? order by c.id`,
      [featureGroup],
    );
    const tables = await rows<{ name: string; attached: boolean }>(
      `select c.relname as name, c.relispartition as attached from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = current_schema() and c.relkind in ('r', 'p') and c.relname ~ ('^fg_' || ? || '_v1__c[0-9]+$')`,
      [featureGroup],
    );
    const locks = await one<{ n: number }>(`select count(*)::int as n from pg_locks l join pg_stat_activity a on a.pid = l.pid where l.locktype = 'advisory' and a.usename = current_user`);
    console.log(
      `[${featureGroup}] after: result rowsIn=${result.rowsIn} committed=${result.rowsCommitted} rejected=${result.rowsRejected}; offline rows=${counted.rows} distinct keys=${counted.keys} ` +
        `distinct row numbers=${counted.row_numbers}; rejects=${rejects.length}; commits=${JSON.stringify(commits.map((c) => c.status))}; commit tables=${JSON.stringify(tables)}; advisory locks=${locks.n}`,
    );

    expect(result.rowsIn).toBe(expected.rowsIn);
    expect(result.rowsCommitted).toBe(expected.committed);
    expect(result.rowsRejected).toBe(expected.rejectRows.length);
    expect(result.rowsInserted).toBe(expected.committed);
    expect(counted.rows).toBe(expected.committed);
    expect(counted.keys).toBe(expected.committed);
    expect(counted.row_numbers).toBe(expected.committed);
    expect(Number(counted.row_number_sum)).toBe(expected.committedRowNumberSum);
    expect(counted.min_time.getTime()).toBeGreaterThanOrEqual(Date.parse(WINDOW.start));
    expect(counted.max_time.getTime()).toBeLessThan(Date.parse(WINDOW.end));
    expect(rejects.map((r) => r.row_number)).toEqual(expected.rejectRows);
    expect(rejects.filter((r) => r.reasons.length !== 1 || r.reasons[0] !== BAD_REASON)).toEqual([]);
    expect(rejectedButCommitted.n).toBe(0);
    expect(commits).toEqual([{ id: result.commitId, status: 'committed', rows_committed: expected.committed, rows_rejected: expected.rejectRows.length }]);
    expect(tables).toEqual([]);
    expect(locks.n).toBe(0);
  }

  beforeAll(async () => {
    db = await createTestDb('wkill');
    temporal = await createTestTemporal('wkill');
    // The source's rows in the window, counted from the whole file (every row group), not by the pipeline.
    const dates = (await parquetReadObjects({ file: await asyncBufferFromFile(FLIGHTS_3M_PARQUET), columns: ['date'], compressors })) as Array<{ date: Date | null }>;
    const [lo, hi] = [Date.parse(WINDOW.start), Date.parse(WINDOW.end)];
    const rejectRows: number[] = [];
    let rowsIn = 0;
    let committedRowNumberSum = 0;
    let undated = 0;
    dates.forEach(({ date }, rowNumber) => {
      if (!(date instanceof Date)) return void undated++;
      const t = date.getTime();
      if (t < lo || t >= hi) return;
      rowsIn++;
      if (rowNumber % BAD_EVERY === BAD_AT) rejectRows.push(rowNumber);
      else committedRowNumberSum += rowNumber; // < 2^53: exact
    });
    // No row without a date: each row of the file is inside the window or outside it.
    expect(undated).toBe(0);
    expected = { rowsIn, rejectRows, committed: rowsIn - rejectRows.length, committedRowNumberSum };
    console.log(`[expected] ${dates.length} source rows; in ${WINDOW.start}..${WINDOW.end}: ${rowsIn}; bad on purpose: ${rejectRows.length}; to commit: ${expected.committed}`);
    expect(rowsIn).toBeGreaterThan(500_000);
    expect(rejectRows.length).toBeGreaterThan(500);
  }, 180_000);

  afterAll(async () => {
    for (const w of workers) await w.kill();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch.dir, { recursive: true, force: true });
  });

  it('a worker SIGKILLed mid-COPY: the rolled-back partitions are retried on a new worker; rows and rejects exactly once, nothing left over', async () => {
    const started = Date.now();
    const first = await startCpu();
    const handle = await startRun('kill_copy');

    // Evidence: every partition COPYing on the first worker, rows flowing, rejects already recorded.
    const atKill = await until('all three partitions COPYing with rejects recorded', async () => {
      const commit = await commitOf('kill_copy');
      if (!commit) return undefined;
      const running = await copies('kill_copy');
      if (running.length < 3 || running.some((c) => c.rows < 10_000)) return undefined;
      const ingests = (await pending(handle)).filter((a) => a.type === 'ingestPartition');
      if (ingests.length !== 3 || ingests.some((a) => !a.started || a.attempt !== 1 || !a.worker.startsWith(identityOf(first)))) return undefined;
      const rejects = await rejectsOf(commit.id);
      if (rejects === 0) return undefined;
      return { commit, running, rejects };
    });
    await first.kill();
    const copied = atKill.running.reduce((n, c) => n + c.rows, 0);
    console.log(`[kill_copy] SIGKILL at ${Date.now() - started} ms: ${atKill.running.length} COPYs had sent ${copied} rows (uncommitted); ${atKill.rejects} rejects recorded (committed)`);

    // The killed worker's sessions end, and their COPYs roll back: no row of them is in the commit's table.
    await until('the killed worker’s COPY sessions to end', async () => ((await alive(atKill.running.map((c) => c.pid))).length === 0 ? true : undefined), 30_000);
    const commitTable = `fg_kill_copy_v1__c${atKill.commit.id}`;
    const stagedAfterKill = await tableRows(commitTable);
    const rejectsAfterKill = await rejectsOf(atKill.commit.id);
    console.log(`[kill_copy] after the kill: staged rows visible=${stagedAfterKill}, rejects left by the dead attempts=${rejectsAfterKill}, offline rows=${await tableRows('fg_kill_copy_v1')}`);
    expect(stagedAfterKill).toBe(0);
    expect(await tableRows('fg_kill_copy_v1')).toBe(0);
    expect(rejectsAfterKill).toBeGreaterThanOrEqual(atKill.rejects);
    expect((await commitOf('kill_copy'))?.status).toBe('staging');

    const second = await startCpu();
    const result = await handle.result();
    const { max, retriedAfter } = await attempts(handle);
    console.log(`[kill_copy] completed in ${Date.now() - started} ms; attempts ${JSON.stringify(max)}; retried after: ${JSON.stringify(retriedAfter)}`);
    expect(max.ingestPartition).toBeGreaterThanOrEqual(2);
    expect(retriedAfter.some((r) => /^ingestPartition: .*heartbeat/i.test(r))).toBe(true);
    await expectExact('kill_copy', result);
    expect(await second.stop()).toBe(0);
  }, SCENARIO_TIMEOUT_MS);

  it('a worker SIGKILLed mid-commit: the commit transaction rolls back, the retry on a new worker commits exactly once', async () => {
    const started = Date.now();
    const first = await startCpu();
    const handle = await startRun('kill_commit');

    // Evidence: the workflow says 'commit', the commit's transaction holds the group's commit lock on
    // the first worker, and it is well into its work: the unique index is built, statistics are running.
    const atKill = await commitInStatistics(handle, 'kill_commit', first);
    const commitTable = `fg_kill_commit_v1__c${atKill.commit.id}`;
    await first.kill();
    console.log(`[kill_commit] SIGKILL at ${Date.now() - started} ms, while session ${atKill.pid} ran: ${atKill.query}`);

    // The dead worker's transaction ends without its COMMIT: nothing it did is left (no index, statistics, stored rows, status).
    await until('the killed commit’s session to end', async () => ((await alive([atKill.pid])).length === 0 ? true : undefined), 60_000);
    const after = await one<{ attached: boolean; indexed: boolean; statistics: number }>(
      `select c.relispartition as attached, to_regclass(? || '_key') is not null as indexed, (select count(*)::int from feature_statistics where commit_id = ?) as statistics
       from pg_class c where c.oid = ?::regclass`,
      [commitTable, atKill.commit.id, commitTable],
    );
    const staged = await tableRows(commitTable);
    console.log(
      `[kill_commit] after the kill: commit status=${(await commitOf('kill_commit'))?.status}, offline rows=${await tableRows('fg_kill_commit_v1')}, staged rows=${staged}, ` +
        `attached=${after.attached}, unique index=${after.indexed}, statistics rows=${after.statistics}`,
    );
    expect((await commitOf('kill_commit'))?.status).toBe('staging');
    expect(await tableRows('fg_kill_commit_v1')).toBe(0);
    expect(after).toEqual({ attached: false, indexed: false, statistics: 0 });
    // The staged rows are all there for the retry: every row read, but the rejects.
    expect(staged).toBe(expected.committed);

    const second = await startCpu();
    const result = await handle.result();
    const { max, retriedAfter } = await attempts(handle);
    const { report } = await one<{ report: { timingsMs?: Record<string, number> } }>(`select validation_report as report from feature_commits where id = ?`, [result.commitId]);
    console.log(`[kill_commit] completed in ${Date.now() - started} ms; attempts ${JSON.stringify(max)}; retried after: ${JSON.stringify(retriedAfter)}; commit steps (ms) of the retry: ${JSON.stringify(report.timingsMs)}`);
    expect(max.commitFeatures).toBeGreaterThanOrEqual(2);
    expect(retriedAfter.some((r) => /^commitFeatures: .*heartbeat/i.test(r))).toBe(true);
    await expectExact('kill_commit', result);
    expect(await second.stop()).toBe(0);
  }, SCENARIO_TIMEOUT_MS);

  it('a zombie: a worker SIGSTOPped mid-COPY is fenced by the retry on a second worker, woken mid-retry, and changes nothing', async () => {
    const started = Date.now();
    // One activity at a time: the stopped worker holds no poll that could swallow the retry.
    const zombie = await startCpu({ FTI_WORKER_CONCURRENCY: '1' });
    const handle = await startRun('zombie_copy');

    const atStop = await until('a partition COPYing on the first worker, with rejects recorded', async () => {
      const commit = await commitOf('zombie_copy');
      if (!commit) return undefined;
      const [copy, ...more] = await copies('zombie_copy');
      if (!copy || more.length || copy.rows < 20_000) return undefined;
      const ingests = (await pending(handle)).filter((a) => a.type === 'ingestPartition' && a.started);
      if (ingests.length !== 1 || !ingests[0]?.worker.startsWith(identityOf(zombie))) return undefined;
      const rejects = await rejectsOf(commit.id);
      return rejects > 0 ? { commit, copy, activityId: ingests[0].id, rejects } : undefined;
    });
    process.kill(zombie.process.pid as number, 'SIGSTOP');
    const stoppedAt = Date.now();
    // The partition whose lease the zombie's COPY session holds.
    const leases = await partitionLeases(atStop.commit.id);
    const zombieLease = leases.filter((l) => l.pid === atStop.copy.pid);
    expect(zombieLease).toHaveLength(1);
    const partition = zombieLease[0]?.partition as number;
    console.log(
      `[zombie_copy] SIGSTOP at ${stoppedAt - started} ms: activity ${atStop.activityId} (partition ${partition}) had COPYed ${atStop.copy.rows} rows (uncommitted) on session ${atStop.copy.pid}; ` +
        `${atStop.rejects} rejects recorded; offline rows=${await tableRows('fg_zombie_copy_v1')}`,
    );

    const second = await startCpu();
    // The heartbeat times out (30 s) and the stalled partition's retry starts on the second worker.
    const retry = await until(
      'the stalled partition to be retried on the second worker',
      async () => (await pending(handle)).find((a) => a.id === atStop.activityId && a.started && a.attempt >= 2),
      150_000,
      250,
    );
    console.log(`[zombie_copy] retry attempt ${retry.attempt} started by ${retry.worker} ${Date.now() - stoppedAt} ms after the SIGSTOP`);
    expect(retry.worker.startsWith(identityOf(second))).toBe(true);
    // The fence: the retry holds the partition's lease, which it could take from the (still stopped)
    // zombie only by ending the zombie's session: its uncommitted COPY is rolled back.
    const retryLease = await until(
      'the retry to hold the partition’s lease',
      async () => (await partitionLeases(atStop.commit.id)).find((l) => l.partition === partition && l.pid !== atStop.copy.pid),
      60_000,
      50,
    );
    expect(await alive([atStop.copy.pid])).toEqual([]);
    expect(zombie.process.signalCode).toBeNull(); // stopped, not dead
    const retryCopied = (await copies('zombie_copy')).find((c) => c.pid === retryLease.pid)?.rows ?? 0;
    console.log(`[zombie_copy] zombie session ${atStop.copy.pid} terminated; the retry holds the lease on session ${retryLease.pid} (${retryCopied} rows COPYed so far); SIGCONT now`);
    process.kill(zombie.process.pid as number, 'SIGCONT');

    const result = await handle.result();
    const { max, retriedAfter } = await attempts(handle);
    console.log(`[zombie_copy] completed in ${Date.now() - started} ms; attempts ${JSON.stringify(max)}; retried after: ${JSON.stringify(retriedAfter)}`);
    expect(max.ingestPartition).toBeGreaterThanOrEqual(2);
    expect(retriedAfter.some((r) => /^ingestPartition: .*heartbeat/i.test(r))).toBe(true);
    await expectExact('zombie_copy', result);
    // The woken zombie's attempt failed on its ended session (its late result is refused by Temporal).
    const zombieFailure = await zombie.waitFor(/Activity failed[^\n]*"activityType":"ingestPartition"[^\n]*"error":[^\n]*/, 60_000);
    console.log(`[zombie_copy] the woken zombie: ${zombieFailure.split('\n').at(-1)?.trim()}`);
    // Both workers stop cleanly, the woken zombie too.
    expect(await Promise.all([zombie.stop(), second.stop()])).toEqual([0, 0]);
  }, SCENARIO_TIMEOUT_MS);

  it('a zombie commit: a worker SIGSTOPped mid-commit is ended by the retry, which commits while it is still stopped; woken, it changes nothing', async () => {
    const started = Date.now();
    // One activity at a time: the stopped worker holds no poll that could swallow the retry.
    const zombie = await startCpu({ FTI_WORKER_CONCURRENCY: '1' });
    const handle = await startRun('zombie_commit');
    const atStop = await commitInStatistics(handle, 'zombie_commit', zombie);
    process.kill(zombie.process.pid as number, 'SIGSTOP');
    const stoppedAt = Date.now();
    const commitTable = `fg_zombie_commit_v1__c${atStop.commit.id}`;
    console.log(
      `[zombie_commit] SIGSTOP at ${stoppedAt - started} ms, while session ${atStop.pid} ran: ${atStop.query}; staged rows=${await tableRows(commitTable)}, offline rows=${await tableRows('fg_zombie_commit_v1')}`,
    );

    const second = await startCpu();
    const retry = await until(
      'the commit to be retried on the second worker',
      async () => (await pending(handle)).find((a) => a.type === 'commitFeatures' && a.started && a.attempt >= 2),
      150_000,
      250,
    );
    console.log(`[zombie_commit] retry attempt ${retry.attempt} started by ${retry.worker} ${Date.now() - stoppedAt} ms after the SIGSTOP`);
    expect(retry.worker.startsWith(identityOf(second))).toBe(true);
    // The stopped worker's session sits idle in its transaction holding the group's commit lock:
    // the retry ends it (the commit's lease), and the run completes with the zombie still stopped.
    await until('the zombie’s commit session to be terminated by the retry', async () => ((await alive([atStop.pid])).length === 0 ? true : undefined), 60_000);
    const result = await Promise.race([
      handle.result(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error('the run did not complete while the zombie was stopped: its commit blocks the retry')), 120_000).unref()),
    ]);
    expect(zombie.process.signalCode).toBeNull(); // still stopped, not dead
    const { max, retriedAfter } = await attempts(handle);
    console.log(`[zombie_commit] completed in ${Date.now() - started} ms, the zombie still stopped; attempts ${JSON.stringify(max)}; retried after: ${JSON.stringify(retriedAfter)}`);
    expect(max.commitFeatures).toBeGreaterThanOrEqual(2);
    expect(retriedAfter.some((r) => /^commitFeatures: .*heartbeat/i.test(r))).toBe(true);
    await expectExact('zombie_commit', result);

    // Woken, the zombie finds its session ended: its attempt fails, and the store is as it was.
    process.kill(zombie.process.pid as number, 'SIGCONT');
    const zombieFailure = await zombie.waitFor(/Activity failed[^\n]*"activityType":"commitFeatures"[^\n]*"error":[^\n]*/, 60_000);
    console.log(`[zombie_commit] the woken zombie: ${zombieFailure.split('\n').at(-1)?.trim()}`);
    await expectExact('zombie_commit', result);
    expect(await Promise.all([zombie.stop(), second.stop()])).toEqual([0, 0]);
  }, SCENARIO_TIMEOUT_MS);

  it('a worker SIGKILLed in its local plan step: the workflow task times out, a new worker plans again; one commit attempt, every row once', async () => {
    const started = Date.now();
    const first = await startCpu();
    // Hold the plan at its insert of the commit attempt: SHARE blocks inserts, not reads.
    const held = await db.knex.transaction();
    await held.raw('lock table feature_commits in share mode');
    const handle = await startRun('kill_plan');
    // Evidence: a worker session waits for feature_commits, and the run has recorded no step yet.
    const waiting = await until('the plan to wait for the commit attempt’s insert', async () => {
      const [session] = await rows<{ pid: number }>(
        `select l.pid from pg_locks l join pg_stat_activity a on a.pid = l.pid
         where not l.granted and a.usename = current_user and l.relation = 'feature_commits'::regclass`,
      );
      return session;
    });
    const before = stepsOf(await handle.fetchHistory());
    expect(before).toEqual({ activities: [], localActivities: [] });
    await first.kill();
    console.log(`[kill_plan] SIGKILL at ${Date.now() - started} ms, the plan's session ${waiting.pid} waiting on feature_commits`);
    const second = await startCpu();
    await held.commit();
    const result = await handle.result();

    const history = await handle.fetchHistory();
    const timedOut = (history.events ?? []).filter((e) => e.workflowTaskTimedOutEventAttributes).length;
    const steps = stepsOf(history);
    console.log(`[kill_plan] completed in ${Date.now() - started} ms; workflow tasks timed out: ${timedOut}; steps ${JSON.stringify(steps)}`);
    // The first workflow task died with its worker; the plan ran to a result once, on the second.
    expect(timedOut).toBeGreaterThanOrEqual(1);
    expect(steps.localActivities).toEqual(['planFeatureRun']);
    expect(new Set(steps.activities)).toEqual(new Set(['ingestPartition', 'commitFeatures']));
    await expectExact('kill_plan', result);
    expect(await second.stop()).toBe(0);
  }, SCENARIO_TIMEOUT_MS);

  it('two deployments in one database (schemas, roles) never take each other’s partition leases', async () => {
    // Advisory locks are per database, commit ids per schema: both schemas' first commit is 1.
    const def = defineFeatureGroup({ name: 'leased', version: 1, entityKeys: ['k'], eventTime: 'at', features: { k: 'string', at: 'timestamp' }, source: { kind: 'ndjson', path: '/dev/null' } });
    const [a, b] = [await createTestDb('wkill_a'), await createTestDb('wkill_b')];
    try {
      const [storeA, storeB] = [new FeatureStore({ knex: a.knex }), new FeatureStore({ knex: b.knex })];
      const [groupA, groupB] = [await storeA.register(def), await storeB.register(def)];
      const [commitA, commitB] = [await storeA.beginCommit(groupA, { idempotencyKey: 'a' }), await storeB.beginCommit(groupB, { idempotencyKey: 'b' })];
      expect([commitA.id, commitB.id]).toEqual([1, 1]);
      let release!: () => void;
      let entered!: () => void;
      const [held, inside] = [new Promise<void>((r) => (release = r)), new Promise<void>((r) => (entered = r))];
      // Deployment A writes partition 0 of its commit 1 and holds its lease…
      const attemptA = storeA.stagePartition(groupA, commitA.id, { index: 0 }, undefined, async () => {
        entered();
        await held;
        return 'A staged';
      });
      await inside;
      // …while deployment B writes partition 0 of its own commit 1: neither waits for nor ends the other.
      const outcomeB = await storeB.stagePartition(groupB, commitB.id, { index: 0 }, undefined, async () => 'B staged').catch((err: unknown) => `B failed: ${(err as Error).message}`);
      release();
      expect([await attemptA, outcomeB]).toEqual(['A staged', 'B staged']);
    } finally {
      await a.close();
      await b.close();
    }
  });
});
