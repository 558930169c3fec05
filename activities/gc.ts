/**
 * Garbage collection (`fti gc`, the `gc` workflow): reaps what nothing else cleans
 * up, once it is older than the retention (FTI_GC_RETENTION, default 7d):
 *   - commit attempts left 'staging' by feature runs whose workflow was terminated
 *     (their fg_…__c<id> tables), when that workflow run is closed;
 *   - training datasets no model version was registered from (their td_<id> tables),
 *     unless the workflow that built them still runs or a running training pipeline
 *     was handed them;
 *   - td_joining_* scratch tables of dataset builds whose worker died, when no
 *     training pipeline of this deployment runs (their age counts from the first gc
 *     that saw them: Postgres does not record when a table was made).
 * The stores do the SQL (registry/feature-store/gc.ts, registry/training/gc.ts); this
 * module asks Temporal what still runs. `collectGarbage` is shared by the activity and
 * the CLI.
 */
import { activityInfo, Context } from '@temporalio/activity';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { isRetention, type Retention } from '../core/config.ts';
import { invalid } from '../core/errors.ts';
import type { FeatureStore, KeptCommit, ReapedCommit } from '../registry/feature-store/index.ts';
import type { KeptDataset, ReapedDataset, TrainingStore } from '../registry/training/index.ts';
import { withDomainFailures } from './failures.ts';

/** What still runs, as Temporal sees it. */
export interface WorkflowState {
  /** Whether the run (the latest run of the id, without a run id) is running. A run Temporal no longer knows is closed. */
  isRunning(workflowId: string, runId?: string | null): Promise<boolean>;
  /** This deployment's running training pipelines, and the datasets those handed one use. */
  runningTrainings(): Promise<{ count: number; datasetIds: number[] }>;
}

/** The WorkflowState of the deployment whose workflows run on `cpuQueue` (`<prefix>fti-cpu`). */
export function temporalWorkflowState(client: Client, cpuQueue: string): WorkflowState {
  if (!/^[A-Za-z0-9_.-]+$/.test(cpuQueue)) throw new Error(`unexpected task queue name ${JSON.stringify(cpuQueue)}`);
  return {
    async isRunning(workflowId, runId) {
      try {
        const description = await client.workflow.getHandle(workflowId, runId ?? undefined).describe();
        return description.status.name === 'RUNNING';
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return false;
        throw err;
      }
    },
    async runningTrainings() {
      const query = `WorkflowType = 'trainingPipeline' AND ExecutionStatus = 'Running' AND TaskQueue = '${cpuQueue}'`;
      let count = 0;
      const datasetIds: number[] = [];
      for await (const run of client.workflow.list({ query })) {
        count++;
        // Only the first event: the input, which may name an existing dataset to train on.
        const history = await client.workflowService.getWorkflowExecutionHistory({
          namespace: client.options.namespace,
          execution: { workflowId: run.workflowId, runId: run.runId },
          maximumPageSize: 1,
        });
        const payload = history.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
        const input: unknown = payload ? client.options.loadedDataConverter.payloadConverter.fromPayload(payload) : undefined;
        const datasetId = typeof input === 'object' && input !== null ? (input as { trainingDatasetId?: unknown }).trainingDatasetId : undefined;
        if (typeof datasetId === 'number') datasetIds.push(datasetId);
      }
      return { count, datasetIds };
    },
  };
}

type Dated<T extends { createdAt: Date }> = Omit<T, 'createdAt'> & { createdAt: string };

export interface GcReport {
  retention: Retention;
  dryRun: boolean;
  /** Exact totals (the lists below may be cut short: `truncated`). */
  counts: { commitsReaped: number; commitsKept: number; datasetsReaped: number; datasetsKept: number; joiningTables: number };
  commits: { reaped: Array<Dated<ReapedCommit>>; kept: Array<Dated<KeptCommit>> };
  datasets: { reaped: Array<Dated<ReapedDataset>>; kept: Array<Dated<KeptDataset>>; joiningTables: string[]; joiningNoticed: string[]; joiningKept?: string };
  /** True when some lists hold only their first entries. */
  truncated: boolean;
}

export interface GcDeps {
  features: FeatureStore;
  training: TrainingStore;
  workflows: WorkflowState;
}

export interface GcOptions {
  retention: Retention;
  dryRun?: boolean;
  /** Called as things are reaped (the activity heartbeats with it). */
  onProgress?: (progress: { stage: 'commits' | 'datasets'; rows: number }) => void;
}

/** Reaps (or, dry, lists) every kind of leftover older than the retention. */
export async function collectGarbage({ features, training, workflows }: GcDeps, options: GcOptions): Promise<GcReport> {
  const dryRun = options.dryRun ?? false;
  const commits = await features.reapStaging({
    retention: options.retention,
    dryRun,
    isRunning: (run) => workflows.isRunning(run.workflowId, run.runId),
    onReaped: (rows) => options.onProgress?.({ stage: 'commits', rows }),
  });
  const trainings = await workflows.runningTrainings();
  const datasets = await training.reapDatasets({
    retention: options.retention,
    dryRun,
    isRunning: (workflowId) => workflows.isRunning(workflowId),
    inUse: trainings.datasetIds,
    buildsRunning: trainings.count > 0,
    onReaped: (rows) => options.onProgress?.({ stage: 'datasets', rows }),
  });
  const dated = <T extends { createdAt: Date }>(item: T): Dated<T> => ({ ...item, createdAt: item.createdAt.toISOString() });
  return {
    retention: options.retention,
    dryRun,
    counts: {
      commitsReaped: commits.reaped.length,
      commitsKept: commits.kept.length,
      datasetsReaped: datasets.reaped.length,
      datasetsKept: datasets.kept.length,
      joiningTables: datasets.joiningTables.length,
    },
    commits: { reaped: commits.reaped.map(dated), kept: commits.kept.map(dated) },
    datasets: {
      reaped: datasets.reaped.map(dated),
      kept: datasets.kept.map(dated),
      joiningTables: datasets.joiningTables,
      joiningNoticed: datasets.joiningNoticed,
      ...(datasets.joiningKept ? { joiningKept: datasets.joiningKept } : {}),
    },
    truncated: false,
  };
}

/** The report with each list cut to its first `max` entries (an activity result must not grow with the leftovers). */
export function truncateReport(report: GcReport, max: number): GcReport {
  const cut = <T>(items: T[]): T[] => items.slice(0, max);
  const lists = [report.commits.reaped, report.commits.kept, report.datasets.reaped, report.datasets.kept, report.datasets.joiningTables, report.datasets.joiningNoticed];
  return {
    ...report,
    commits: { reaped: cut(report.commits.reaped), kept: cut(report.commits.kept) },
    datasets: { ...report.datasets, reaped: cut(report.datasets.reaped), kept: cut(report.datasets.kept), joiningTables: cut(report.datasets.joiningTables), joiningNoticed: cut(report.datasets.joiningNoticed) },
    truncated: report.truncated || lists.some((l) => l.length > max),
  };
}

/** Entries of each list the activity returns at most. */
const REPORTED = 100;

export interface GcInput {
  /** Default: the worker's FTI_GC_RETENTION. */
  retention?: Retention;
  dryRun?: boolean;
}

export interface GcActivityDeps {
  features: FeatureStore;
  training: TrainingStore;
  /** The worker's FTI_GC_RETENTION. */
  defaultRetention: Retention;
}

export function createGcActivities({ features, training, defaultRetention }: GcActivityDeps) {
  return withDomainFailures({
    /** Reaps leftovers older than the retention (idempotent: a retry reaps what is left). */
    async reapLeftovers(input: GcInput = {}): Promise<GcReport> {
      const retention = input.retention ?? defaultRetention;
      if (!isRetention(retention)) throw invalid(`retention must be a duration such as 12h or 7d, or 0; got ${JSON.stringify(retention)}`);
      const context = Context.current();
      // The activity runs on the CPU queue, where this deployment's workflows run too.
      const workflows = temporalWorkflowState(context.client, activityInfo().taskQueue);
      const report = await collectGarbage({ features, training, workflows }, { retention, dryRun: input.dryRun, onProgress: (p) => context.heartbeat(p) });
      context.log.info('gc', { retention, dryRun: report.dryRun, ...report.counts });
      return truncateReport(report, REPORTED);
    },
  });
}
