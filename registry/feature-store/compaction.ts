/**
 * Compaction of a group's offline partitions (`fti compact`, the `compaction` workflow).
 *
 * Commits write straight into their event-time range's partition (tables.ts
 * storeInRanges), so unlike a lakehouse there are no small per-commit files to merge.
 * What a year of hourly commits does leave is each range's rows in arrival order: an
 * entity's rows of a month sit on as many pages as there were commits, and rows a
 * correction moved to history leave dead tuples behind. Compacting a partition
 * rewrites it in the order of its key (entity keys, event time: CLUSTER on its unique
 * index), which also drops the dead tuples, and refreshes its planner statistics (a
 * partition stored before range partitions had a time index gets one: tables.ts).
 * Rows are not changed (their commit ids included), so every snapshot reads the same
 * rows afterwards.
 *
 * A partition is compacted when a commit has written to its range since its last
 * compaction (feature_partition_compactions). The group's newest range, which the
 * next commits write to, is left alone unless `includeOpen`. Each partition is one
 * transaction under the group's commit lock: commits of the group wait for it, and
 * readers of that partition wait for the rewrite (CLUSTER locks it); a partition
 * still in use after the lock timeout is left for the next run.
 */
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { id, isLockNotAvailable, raw, sql, transaction } from '../db/index.ts';
import { lockGroupCommits } from './commit.ts';
import { rangePartitions, timeIndex, upgradeGroupTables, type GroupShape } from './tables.ts';

/** The reason a partition nothing wrote to since its last compaction is skipped. */
export const UNCHANGED_SINCE_COMPACTION = 'no commit wrote to it since its last compaction';

export interface CompactionOptions {
  /** Compact the group's newest range too (the one hourly commits still write to). */
  includeOpen?: boolean;
  /** How long to wait for readers of a partition before leaving it for the next run (default 10s). */
  lockTimeout?: string;
  /** Called after each partition compacted (for heartbeats). */
  onCompacted?: (partition: CompactedPartition) => void;
}

export interface CompactedPartition {
  partition: string;
  /** The first instant of its event-time range (ISO 8601, UTC). */
  rangeStart: string;
  rows: number;
  /** Commits that wrote to its range since its last compaction. */
  commits: number;
  ms: number;
}

export interface CompactionResult {
  featureGroup: string;
  version: number;
  compacted: CompactedPartition[];
  /** Partitions left as they were, and why. */
  skipped: Array<{ partition: string; reason: string }>;
}

export async function compactGroup(knex: Knex, group: GroupShape & { id: number }, options: CompactionOptions = {}): Promise<CompactionResult> {
  await upgradeGroupTables(knex, group);
  const result: CompactionResult = { featureGroup: group.name, version: group.version, compacted: [], skipped: [] };
  const newest = ((await knex('feature_commits').where({ feature_group_id: group.id, status: 'committed' }).max('max_event_time as t').first()) as { t: Date | null } | undefined)?.t;
  for (const { partition, start, end } of await rangePartitions(knex, group)) {
    if (!options.includeOpen && newest && end > newest) {
      result.skipped.push({ partition, reason: 'the newest range, which commits still write to (includeOpen compacts it)' });
      continue;
    }
    try {
      const done = await transaction(knex, async (trx) => {
        await lockGroupCommits(trx, group.id);
        const last = (await trx('feature_partition_compactions').where({ feature_group_id: group.id, partition }).first('compacted_seq')) as { compacted_seq: string } | undefined;
        const since = (await raw(
          trx,
          sql`select count(*)::int as n from feature_commits
              where feature_group_id = ${group.id} and status = 'committed' and visible_seq > ${last ? Number(last.compacted_seq) : 0}
                and min_event_time < ${end} and max_event_time >= ${start}`,
        )) as { rows: Array<{ n: number }> };
        const commits = since.rows[0]?.n ?? 0;
        if (commits === 0) return undefined;
        const started = performance.now();
        await trx.raw(`select set_config('lock_timeout', ?, true), set_config('maintenance_work_mem', '512MB', true)`, [options.lockTimeout ?? '10s']);
        await raw(trx, sql`cluster ${id(partition)} using ${id(`${partition}_key`)}`);
        // A partition stored before partitions had a time index gets it here.
        await raw(trx, timeIndex(group, partition));
        await raw(trx, sql`analyze ${id(partition)}`);
        const rows = Number(((await raw(trx, sql`select count(*)::bigint as n from ${id(partition)}`)) as { rows: Array<{ n: string }> }).rows[0]?.n ?? 0);
        // Under the commit lock, no commit is in flight: the group's last seq is what this compaction saw.
        const seq = ((await trx('feature_commits').where({ feature_group_id: group.id }).max('visible_seq as s').first()) as { s: string | null } | undefined)?.s;
        await trx('feature_partition_compactions')
          .insert({ feature_group_id: group.id, partition, compacted_seq: Number(seq ?? 0), rows, compacted_at: trx.fn.now() })
          .onConflict(['feature_group_id', 'partition'])
          .merge();
        return { partition, rangeStart: start.toISOString(), rows, commits, ms: Math.round(performance.now() - started) };
      });
      if (done) {
        result.compacted.push(done);
        options.onCompacted?.(done);
      } else {
        result.skipped.push({ partition, reason: UNCHANGED_SINCE_COMPACTION });
      }
    } catch (err) {
      if (!isLockNotAvailable(err)) throw err;
      result.skipped.push({ partition, reason: `in use for longer than the lock timeout (${options.lockTimeout ?? '10s'}): left for the next run` });
    }
  }
  return result;
}
