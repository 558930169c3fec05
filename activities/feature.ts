/**
 * Feature pipeline activities (CPU pool). Thin: they look the definition up in
 * the catalog and call the feature store; every step is idempotent per commit
 * attempt, so a retry never duplicates or loses rows.
 */
import { activityInfo, Context } from '@temporalio/activity';
import { FtiError, FailureType } from '../core/errors.ts';
import type { SourceSpec } from '../core/inputs.ts';
import type { FeatureGroupCommitRef } from '../core/refs.ts';
import type { Catalog } from '../features/catalog.ts';
import type { FeatureGroupDefinition } from '../features/definitions.ts';
import { encodeRows, type IngestCounters } from '../features/ingest.ts';
import { openSource, type SourcePartition, type TimeWindow } from '../features/sources/index.ts';
import type { FeatureStore } from '../registry/feature-store/index.ts';
import { heartbeatWhile } from './heartbeat.ts';
import { withDomainFailures } from './failures.ts';

/** The commit attempt a feature run writes: what its activities pass each other. */
export type FeatureRunRef = FeatureGroupCommitRef;

export interface PlanInput {
  featureGroup: string;
  version?: number;
  source?: SourceSpec;
  start?: string;
  end?: string;
}

export type FeatureRunPlan = FeatureRunRef &
  (
    | { kind: 'source'; partitions: SourcePartition[] }
    | { kind: 'aggregate'; partitions: number; sourceCommitId: number }
    | { kind: 'done'; result: FeaturePipelineResult }
  );

export interface PartitionResult {
  partition: number;
  rowsIn: number;
  rowsStaged: number;
  rowsRejected: number;
}

export interface FeaturePipelineResult extends FeatureRunRef {
  rowsIn: number;
  rowsCommitted: number;
  rowsRejected: number;
  rowsInserted: number;
  rowsUpdated: number;
  rowsUnchanged: number;
  /** For derived groups: the source commits read. */
  sourceCommits: FeatureGroupCommitRef[];
}

export interface FeatureActivityDeps {
  store: FeatureStore;
  catalog: Catalog<FeatureGroupDefinition>;
  /** Entity-hash partitions for aggregate groups (parallel SQL); default 2. */
  aggregatePartitions?: number;
}

export function createFeatureActivities({ store, catalog, aggregatePartitions = 2 }: FeatureActivityDeps) {
  return withDomainFailures({
    /** Registers the definition, opens (or re-finds) the commit attempt and lists the partitions. */
    async planFeatureRun(input: PlanInput): Promise<FeatureRunPlan> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.register(def);
      const info = activityInfo();
      const window = toWindow(input);
      const execution = info.workflowExecution;
      const base = {
        idempotencyKey: execution ? `${execution.workflowId}/${execution.runId}` : `activity/${info.activityId}`,
        workflowId: execution?.workflowId,
        runId: execution?.runId,
        windowStart: window.start,
        windowEnd: window.end,
      };
      if (def.source.kind === 'feature_group') {
        const sourceGroup = await store.group(def.source.name, def.source.version);
        const sourceCommit = await store.latestCommit(sourceGroup);
        if (!sourceCommit) {
          throw new FtiError(FailureType.NotFound, `${def.name} aggregates ${sourceGroup.name} v${sourceGroup.version}, which has no commit yet: run its feature pipeline first`);
        }
        const commit = await store.beginCommit(group, { ...base, sourceCommits: [{ featureGroup: sourceGroup.name, version: sourceGroup.version, commitId: sourceCommit.id }] });
        const ref = { featureGroup: def.name, version: def.version, commitId: commit.id };
        if (commit.status === 'committed') return { ...ref, kind: 'done', result: resultOf(ref, commit) };
        return { ...ref, kind: 'aggregate', partitions: aggregatePartitions, sourceCommitId: sourceCommit.id };
      }
      const commit = await store.beginCommit(group, base);
      const ref = { featureGroup: def.name, version: def.version, commitId: commit.id };
      if (commit.status === 'committed') return { ...ref, kind: 'done', result: resultOf(ref, commit) };
      const source = openSource(sourceSpec(def, input.source), sourceDeps(store));
      return { ...ref, kind: 'source', partitions: await source.partitions(window) };
    },

    /** Reads one partition of the source into the commit's staging table. */
    async ingestPartition(input: FeatureRunRef & { partition: SourcePartition; source?: SourceSpec; start?: string; end?: string }): Promise<PartitionResult> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      const window = toWindow(input);
      const { partition } = input;
      const range = partition.rowStart !== undefined && partition.rowEnd !== undefined ? { rowStart: partition.rowStart, rowEnd: partition.rowEnd } : undefined;
      // A retry starts the partition over: clear what an earlier attempt staged.
      await store.clearStaged(group, input.commitId, range);
      const counters: IngestCounters = { rowsIn: 0, rowsStaged: 0, rowsRejected: 0, rowsOutsideWindow: 0 };
      const total = range ? range.rowEnd - range.rowStart : undefined;
      const context = Context.current();
      const progress = () => ({ stage: 'ingest', partition: partition.index, rows: counters.rowsIn + counters.rowsOutsideWindow, total });
      const source = openSource(sourceSpec(def, input.source), sourceDeps(store));
      const chunks = encodeRows(def, source.read(partition, window), window, counters, (rejects) => store.reject(input.commitId, rejects), () => context.heartbeat(progress()));
      await heartbeatWhile(progress, store.copyRows(group, input.commitId, chunks));
      return { partition: partition.index, rowsIn: counters.rowsIn, rowsStaged: counters.rowsStaged, rowsRejected: counters.rowsRejected };
    },

    /** Computes one entity-hash partition of an aggregate group, in SQL. */
    async aggregatePartition(input: FeatureRunRef & { partition: number; partitions: number; sourceCommitId: number; start?: string; end?: string }): Promise<PartitionResult> {
      const def = catalog.get(input.featureGroup, input.version);
      if (def.source.kind !== 'feature_group' || !def.aggregation) throw new FtiError(FailureType.InvalidInput, `${def.name} is not an aggregate feature group`);
      const group = await store.group(def.name, def.version);
      const source = await store.group(def.source.name, def.source.version);
      const window = toWindow(input);
      const rows = await heartbeatWhile(
        () => ({ stage: 'aggregate', partition: input.partition, total: input.partitions }),
        store.aggregate({
          target: group,
          aggregation: def.aggregation,
          source,
          sourceCommitId: input.sourceCommitId,
          commitId: input.commitId,
          start: window.start,
          end: window.end,
          partition: input.partition,
          partitions: input.partitions,
        }),
      );
      return { partition: input.partition, rowsIn: rows, rowsStaged: rows, rowsRejected: 0 };
    },

    /** Validates and makes the staged rows visible in one transaction. */
    async commitFeatures(input: FeatureRunRef): Promise<FeaturePipelineResult> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      const outcome = await heartbeatWhile(() => ({ stage: 'commit', commitId: input.commitId }), store.commit(group, rulesOf(def), input.commitId));
      if (!outcome.ok) {
        const { report } = outcome;
        const first = report.sample.slice(0, 3).map((r) => `row ${r.rowNumber}: ${r.reasons.join('; ')}`);
        throw new FtiError(
          FailureType.ValidationFailed,
          `${report.rowsRejected} of ${report.rowsIn} rows of ${def.name} v${def.version} failed validation under the strict policy; nothing was committed (commit attempt ${input.commitId}). ${first.join(' | ')}`,
          { commitId: input.commitId, report },
        );
      }
      return resultOf(input, outcome.commit);
    },

    /** Gives up on an attempt: marks it failed and drops its staged rows. */
    async abortFeatureRun(input: FeatureRunRef & { error: string }): Promise<void> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      await store.abort(group, input.commitId, input.error);
    },
  });
}

function sourceDeps(store: FeatureStore) {
  return { queryRows: (query: string, params: unknown[], batchSize: number) => store.sourceRows(query, params, batchSize) };
}

function rulesOf(def: FeatureGroupDefinition) {
  return { expectations: def.expectations, validation: def.validation };
}

function sourceSpec(def: FeatureGroupDefinition, override: SourceSpec | undefined): Exclude<SourceSpec, { kind: 'feature_group' }> {
  const spec = override ?? def.source;
  if (spec.kind === 'feature_group') throw new FtiError(FailureType.InvalidInput, `${def.name} reads files or queries, not another feature group`);
  return spec;
}

function toWindow(input: { start?: string; end?: string }): TimeWindow {
  return { start: input.start ? new Date(input.start) : undefined, end: input.end ? new Date(input.end) : undefined };
}

function resultOf(ref: FeatureRunRef, commit: Awaited<ReturnType<FeatureStore['getCommit']>>): FeaturePipelineResult {
  return {
    ...ref,
    rowsIn: commit.rowsIn,
    rowsCommitted: commit.rowsCommitted,
    rowsRejected: commit.rowsRejected,
    rowsInserted: commit.rowsInserted,
    rowsUpdated: commit.rowsUpdated,
    rowsUnchanged: commit.rowsUnchanged,
    sourceCommits: commit.sourceCommits,
  };
}
