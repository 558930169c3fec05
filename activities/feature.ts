/**
 * Feature pipeline activities (CPU pool). Thin: they look the definition up in
 * the catalog and call the feature store; every step is idempotent per commit
 * attempt, so a retry never duplicates or loses rows.
 */
import { activityInfo, Context } from '@temporalio/activity';
import { FtiError, FailureType, invalid, parseOrThrow } from '../core/errors.ts';
import { SourceOverrideSchema, type FileSourceSpec } from '../core/inputs.ts';
import { upstreamCommittedSignal } from '../core/progress.ts';
import type { FeatureGroupCommitRef } from '../core/refs.ts';
import type { Catalog } from '../features/catalog.ts';
import { longestWindowMs, sourceColumnsRead, type FeatureGroupDefinition } from '../features/definitions.ts';
import { encodeRows, type IngestCounters } from '../features/ingest.ts';
import { isFileSource, openSource, resolveSourceFile, short, clipSpan, type DataRootPolicy, type Source, type SourcePartition, type TimeSpan, type TimeWindow, DEFAULT_PARTITION_SIZING } from '../features/sources/index.ts';
import { parseTimestamp } from '../features/timestamps.ts';
import type { FeatureStore, ValidationReport } from '../registry/feature-store/index.ts';
import { codeVersion } from './code-version.ts';
import { heartbeatWhile } from './heartbeat.ts';
import { withDomainFailures } from './failures.ts';
import { signalFromActivity } from './context.ts';

/** The commit attempt a feature run writes: what its activities pass each other. */
export type FeatureRunRef = FeatureGroupCommitRef;

export interface CommitInput extends FeatureRunRef {
  /**
   * The run of the same chain that waits for this commit (the workflow checked it is a
   * sibling: workflows/upstream.ts), told as soon as the commit is made.
   */
  tell?: string;
}

export interface PlanInput {
  featureGroup: string;
  version?: number;
  /** A one-off file instead of the definition's source; allowed only under the data roots. */
  source?: FileSourceSpec;
  start?: string;
  end?: string;
  /** Rows per partition of a splittable source; default DEFAULT_PARTITION_SIZING.rows. */
  partitionRows?: number;
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
  /** Entity-hash partitions for aggregate groups (computed side by side); default 2. */
  aggregatePartitions?: number;
  /**
   * FTI_DATA_ROOTS: directories a workflow input's source file must resolve into (symlinks
   * followed). The definitions' own files are always allowed; default: nothing else.
   */
  dataRoots?: string[];
}

export function createFeatureActivities({ store, catalog, aggregatePartitions = 2, dataRoots = [] }: FeatureActivityDeps) {
  const policy = (): DataRootPolicy => ({ roots: dataRoots, files: catalog.list().flatMap((d) => (isFileSource(d.source) ? [d.source.path] : [])) });

  /**
   * The source a run reads: the definition's own, or the input's file once it resolved inside
   * a data root (checked here, on the worker that opens it, before any byte is read). Every
   * read checks the source's columns against the definition before its first row.
   */
  async function sourceOf(def: FeatureGroupDefinition, override: unknown): Promise<{ source: Source; checkColumns?: (found: string[]) => void }> {
    if (def.source.kind === 'feature_group') {
      if (override !== undefined) {
        throw invalid(`${def.name} v${def.version} is computed in SQL from ${def.source.name} v${def.source.version}; it reads no file, so a source override is refused`);
      }
      throw invalid(`${def.name} reads files or queries, not another feature group`);
    }
    let spec: Exclude<FeatureGroupDefinition['source'], { kind: 'feature_group' }> = def.source;
    if (override !== undefined) {
      // Checked again here: the workflow validated it, but an activity trusts no input.
      const file = parseOrThrow(SourceOverrideSchema, override, 'source override', { root: 'source' });
      spec = { ...file, path: await resolveSourceFile(file.path, policy()) };
    }
    const checkColumns = isFileSource(spec) ? columnCheck(def, spec) : undefined;
    const source = openSource(spec, {
      queryRows: (query, params, batchSize) => store.sourceRows(query, params, batchSize, { zonelessTimestamp: (text) => parseTimestamp(text, def.timeZone) ?? text }),
      timeZone: def.timeZone,
      checkColumns,
    });
    return { source, checkColumns };
  }

  return withDomainFailures({
    /**
     * Checks the source (data roots, columns, a readable file) and lists its partitions,
     * then registers the definition and opens (or re-finds) the commit attempt: a bad input
     * fails before anything is written.
     */
    async planFeatureRun(input: PlanInput): Promise<FeatureRunPlan> {
      const def = catalog.get(input.featureGroup, input.version);
      const window = toWindow(input);
      let partitions: SourcePartition[] | undefined;
      let expectedSpan: TimeSpan | undefined;
      if (def.source.kind !== 'feature_group' || input.source !== undefined) {
        const { source, checkColumns } = await sourceOf(def, input.source);
        // The header (schema, first object) before any row: a file that does not fit fails here.
        const columns = checkColumns ? await source.columns() : undefined;
        if (columns) checkColumns?.(columns);
        partitions = await source.partitions(window, { ...DEFAULT_PARTITION_SIZING, ...(input.partitionRows ? { rows: input.partitionRows } : {}) });
        expectedSpan = await source.timeSpan?.(window);
      }
      const group = await store.register(def);
      const info = activityInfo();
      const execution = info.workflowExecution;
      const base = {
        idempotencyKey: execution ? `${execution.workflowId}/${execution.runId}` : `activity/${info.activityId}`,
        workflowId: execution?.workflowId,
        runId: execution?.runId,
        windowStart: window.start,
        windowEnd: window.end,
        codeVersion: codeVersion() ?? undefined,
      };
      if (def.source.kind === 'feature_group') {
        const sourceGroup = await store.group(def.source.name, def.source.version);
        const sourceCommit = await store.latestCommit(sourceGroup);
        if (!sourceCommit) {
          throw new FtiError(FailureType.NotFound, `${def.name} aggregates ${sourceGroup.name} v${sourceGroup.version}, which has no commit yet: run its feature pipeline first`);
        }
        // Change points run from the source's first event to its last one's exit from the longest window.
        const sourceSpan = await store.committedSpan(sourceGroup);
        const longest = def.aggregation ? longestWindowMs(def.aggregation) : 0;
        const aggregateSpan = sourceSpan && clipSpan({ start: sourceSpan.start, end: new Date(sourceSpan.end.getTime() + longest) }, window);
        const commit = await store.beginCommit(group, { ...base, expectedSpan: aggregateSpan, sourceCommits: [{ featureGroup: sourceGroup.name, version: sourceGroup.version, commitId: sourceCommit.id }] });
        const ref = { featureGroup: def.name, version: def.version, commitId: commit.id };
        if (commit.status === 'committed') return { ...ref, kind: 'done', result: resultOf(ref, commit) };
        return { ...ref, kind: 'aggregate', partitions: aggregatePartitions, sourceCommitId: sourceCommit.id };
      }
      const commit = await store.beginCommit(group, { ...base, expectedSpan });
      const ref = { featureGroup: def.name, version: def.version, commitId: commit.id };
      if (commit.status === 'committed') return { ...ref, kind: 'done', result: resultOf(ref, commit) };
      return { ...ref, kind: 'source', partitions: partitions ?? [] };
    },

    /** Reads one partition of the source into the commit's staging table. */
    async ingestPartition(input: FeatureRunRef & { partition: SourcePartition; source?: FileSourceSpec; start?: string; end?: string }): Promise<PartitionResult> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      const window = toWindow(input);
      const { partition } = input;
      const range = partition.rowStart !== undefined && partition.rowEnd !== undefined ? { rowStart: partition.rowStart, rowEnd: partition.rowEnd } : undefined;
      const counters: IngestCounters = { rowsIn: 0, rowsStaged: 0, rowsRejected: 0, rowsOutsideWindow: 0 };
      const total = range ? range.rowEnd - range.rowStart : undefined;
      const context = Context.current();
      const progress = () => ({ stage: 'ingest', partition: partition.index, rows: counters.rowsIn + counters.rowsOutsideWindow, total });
      const { source } = await sourceOf(def, input.source);
      // A fenced attempt: it starts the partition over (clearing what an earlier attempt
      // staged) and a zombie attempt can neither add to it nor break it; a cancel stops the COPY.
      await store.stagePartition(group, input.commitId, { index: partition.index, ...(range ? { range } : {}) }, context.cancellationSignal, async (stage) => {
        // The heartbeat follows the rows read: it stops when the source stops moving.
        const chunks = encodeRows(def, source.read(partition, window), window, counters, (rejects) => store.reject(input.commitId, rejects), () => context.heartbeat(progress()));
        await stage.copyRows(group, input.commitId, chunks, context.cancellationSignal);
      });
      return { partition: partition.index, rowsIn: counters.rowsIn, rowsStaged: counters.rowsStaged, rowsRejected: counters.rowsRejected };
    },

    /** Computes one entity-hash partition of an aggregate group (registry/feature-store/aggregates.ts). */
    async aggregatePartition(input: FeatureRunRef & { partition: number; partitions: number; sourceCommitId: number; start?: string; end?: string }): Promise<PartitionResult> {
      const def = catalog.get(input.featureGroup, input.version);
      if (def.source.kind !== 'feature_group' || !def.aggregation) throw new FtiError(FailureType.InvalidInput, `${def.name} is not an aggregate feature group`);
      const group = await store.group(def.name, def.version);
      const source = await store.group(def.source.name, def.source.version);
      const window = toWindow(input);
      const run = {
        target: group,
        aggregation: def.aggregation,
        source,
        sourceCommitId: input.sourceCommitId,
        commitId: input.commitId,
        start: window.start,
        end: window.end,
        partition: input.partition,
        partitions: input.partitions,
      };
      // The heartbeat says the worker is alive while the partition is read, computed and written; a cancel cancels its statements.
      const context = Context.current();
      const rows = await heartbeatWhile(() => ({ stage: 'aggregate', partition: input.partition, total: input.partitions }), store.aggregate(run, context.cancellationSignal));
      return { partition: input.partition, rowsIn: rows, rowsStaged: rows, rowsRejected: 0 };
    },

    /** Validates and makes the staged rows visible in one transaction. */
    async commitFeatures(input: CommitInput): Promise<FeaturePipelineResult> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      const outcome = await heartbeatWhile(() => ({ stage: 'commit', commitId: input.commitId }), store.commit(group, rulesOf(def), input.commitId));
      if (!outcome.ok) throw refusedCommit(def, input.commitId, outcome.report);
      // The next run of the chain starts without waiting for this run's workflow task (which tells it again).
      if (input.tell) await signalFromActivity(input.tell, upstreamCommittedSignal, [], 'tell the next run of the chain that the commit is made');
      return resultOf({ featureGroup: input.featureGroup, version: input.version, commitId: input.commitId }, outcome.commit);
    },

    /** Gives up on an attempt: marks it failed and drops its staged rows. */
    async abortFeatureRun(input: FeatureRunRef & { error: string }): Promise<void> {
      const def = catalog.get(input.featureGroup, input.version);
      const group = await store.group(def.name, def.version);
      await store.abort(group, input.commitId, input.error);
    },
  });
}

function rulesOf(def: FeatureGroupDefinition) {
  return { expectations: def.expectations, validation: def.validation, maxRejectRatio: def.maxRejectRatio };
}

/**
 * The check of a file source's columns (its header, schema or first object) against the raw
 * columns the definition reads: a missing or renamed column, or a wrong delimiter that
 * yields one column, fails the run at once, naming the columns expected and found.
 * Undefined when the definition's transform reads columns it does not declare.
 */
function columnCheck(def: FeatureGroupDefinition, spec: FileSourceSpec): ((found: string[]) => void) | undefined {
  const expected = sourceColumnsRead(def);
  if (!expected) return undefined;
  return (found) => {
    const have = new Set(found);
    const missing = expected.filter((c) => !have.has(c));
    if (missing.length === 0) return;
    const hint =
      spec.kind === 'csv' && found.length === 1 && expected.length > 1
        ? `; one column only: is the delimiter right? the file is read as ${JSON.stringify(spec.delimiter ?? ',')}-separated`
        : '';
    throw invalid(
      `source file ${spec.path} does not have the columns ${def.name} v${def.version} reads: missing ${names(missing)}; expected ${names(expected)}; found ${names(found)}${hint}`,
      { path: spec.path, missing, expected, found: found.slice(0, MAX_NAMES).map((n) => short(n, 64)) },
    );
  };
}

const MAX_NAMES = 30;

/** Column names for a message: quoted, each shortened, at most MAX_NAMES. */
function names(list: string[]): string {
  const shown = list.slice(0, MAX_NAMES).map((n) => JSON.stringify(short(n, 64)));
  return `${shown.join(', ')}${list.length > MAX_NAMES ? ` and ${list.length - MAX_NAMES} more` : ''}${list.length === 0 ? '(none)' : ''}`;
}

/**
 * The failure of a refused commit. Its message and details carry counts and the first few
 * reasons (shortened), never a source row: rejected rows stay in feature_rejects, and a
 * failure's details are shown to anyone who can open the Temporal UI.
 */
function refusedCommit(def: FeatureGroupDefinition, commitId: number, report: ValidationReport): FtiError {
  const what = `${def.name} v${def.version}`;
  const firstReasons = report.sample.slice(0, 3).map((r) => ({ rowNumber: r.rowNumber, reasons: r.reasons.slice(0, 3).map((reason) => short(reason, 200)) }));
  const first = firstReasons.map((r) => `row ${r.rowNumber}: ${r.reasons.join('; ')}`).join(' | ');
  const kept = `nothing was committed (commit attempt ${commitId}); the rejected rows are kept with their reasons in feature_rejects.`;
  const ratio = report.maxRejectRatio ?? def.maxRejectRatio;
  const message =
    report.refusal === 'no_rows'
      ? `${what} would commit 0 rows: all ${report.rowsIn} rows read were rejected; ${kept} ${first}`
      : report.refusal === 'reject_ratio'
        ? `${report.rowsRejected} of ${report.rowsIn} rows of ${what} were rejected (${percent(report.rowsRejected / report.rowsIn)}), more than its maximum reject ratio of ${percent(ratio)} under the quarantine policy; ${kept} ${first}`
        : `${report.rowsRejected} of ${report.rowsIn} rows of ${what} failed validation under the strict policy; nothing was committed (commit attempt ${commitId}). ${first}`;
  return new FtiError(FailureType.ValidationFailed, message.trim(), {
    commitId,
    policy: report.policy,
    refusal: report.refusal ?? 'strict',
    rowsIn: report.rowsIn,
    rowsRejected: report.rowsRejected,
    maxRejectRatio: ratio,
    reasons: report.reasons,
    firstReasons,
  });
}

function percent(ratio: number): string {
  return `${Number((ratio * 100).toFixed(1))}%`;
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
