/**
 * The feature store facade: definitions in, commits out, reads back. Everything
 * that touches Postgres for features goes through here; each concern lives in a
 * module of its own beside this file.
 */
import type { Knex } from 'knex';
import type { FeatureGroupDefinition } from '../../features/definitions.ts';
import { computeAggregates, type AggregateRun } from './aggregates.ts';
import { commitStaged, abortCommit, type CommitOutcome, type CommitRules } from './commit.ts';
import { beginCommit, getCommit, latestCommit, listCommits, type BeginCommitInput, type CommitStatus, type FeatureCommit } from './commits.ts';
import { getFeatureGroup, listFeatureGroups, registerFeatureGroup, type FeatureGroupRecord } from './groups.ts';
import { getOnlineFeatures, readOffline, type FeatureRecord, type ReadOptions, type RetrievalJob } from './reads.ts';
import { clearStaged, copyIntoCommit, insertRejects, type RejectedRow } from './staging.ts';
import { getStatistics, type FeatureStatistics } from './statistics.ts';

export class FeatureStore {
  constructor(readonly knex: Knex) {}

  register(def: FeatureGroupDefinition): Promise<FeatureGroupRecord> {
    return registerFeatureGroup(this.knex, def);
  }

  group(name: string, version?: number): Promise<FeatureGroupRecord> {
    return getFeatureGroup(this.knex, name, version);
  }

  groups(): Promise<FeatureGroupRecord[]> {
    return listFeatureGroups(this.knex);
  }

  beginCommit(group: FeatureGroupRecord, input: BeginCommitInput): Promise<FeatureCommit> {
    return beginCommit(this.knex, group, input);
  }

  copyRows(group: FeatureGroupRecord, commitId: number, chunks: AsyncIterable<string>): Promise<void> {
    return copyIntoCommit(this.knex, group, commitId, chunks);
  }

  reject(commitId: number, rows: RejectedRow[]): Promise<void> {
    return insertRejects(this.knex, commitId, rows);
  }

  clearStaged(group: FeatureGroupRecord, commitId: number, range?: { rowStart: number; rowEnd: number }): Promise<void> {
    return clearStaged(this.knex, group, commitId, range);
  }

  aggregate(run: AggregateRun): Promise<number> {
    return computeAggregates(this.knex, run);
  }

  commit(group: FeatureGroupRecord, rules: CommitRules, commitId: number): Promise<CommitOutcome> {
    return commitStaged(this.knex, group, rules, commitId);
  }

  abort(group: FeatureGroupRecord, commitId: number, error: string): Promise<void> {
    return abortCommit(this.knex, group, commitId, error);
  }

  getCommit(commitId: number): Promise<FeatureCommit> {
    return getCommit(this.knex, commitId);
  }

  commits(group: FeatureGroupRecord, filter: { status?: CommitStatus } = {}): Promise<FeatureCommit[]> {
    return listCommits(this.knex, group.id, filter);
  }

  latestCommit(group: FeatureGroupRecord): Promise<FeatureCommit | undefined> {
    return latestCommit(this.knex, group.id);
  }

  read(group: FeatureGroupRecord, options?: ReadOptions): RetrievalJob {
    return readOffline(this.knex, group, options);
  }

  online(group: FeatureGroupRecord, keys: Array<Record<string, unknown>>): Promise<Array<FeatureRecord | undefined>> {
    return getOnlineFeatures(this.knex, group, keys);
  }

  statistics(commitId: number): Promise<FeatureStatistics[]> {
    return getStatistics(this.knex, commitId);
  }

  async rejects(commitId: number): Promise<RejectedRow[]> {
    const rows = await this.knex('feature_rejects').where({ commit_id: commitId }).orderBy('row_number');
    return rows.map((r: { row_number: number; reasons: string[]; row: Record<string, unknown> }) => ({ rowNumber: Number(r.row_number), reasons: r.reasons, row: r.row }));
  }
}

export type { FeatureGroupRecord, FeatureCommit, CommitStatus, RetrievalJob, FeatureRecord, ReadOptions, FeatureStatistics, RejectedRow };
export { snapshotSql } from './reads.ts';
export { groupTables } from './tables.ts';
