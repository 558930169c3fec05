/**
 * The typed programmatic client: start a pipeline, follow its progress, wait for its
 * result, cancel it; and manage its schedules.
 *
 *   const fti = await FtiClient.connect();            // TEMPORAL_ADDRESS, FTI_TASK_QUEUE_PREFIX…
 *   const run = await fti.start('feature', { featureGroup: 'flights', start, end });
 *   const result = await run.wait({ onProgress: (u) => console.log(u) });
 *
 * Workflow ids come from the business inputs (pipelines.ts), so starting the same
 * window twice does not run it twice:
 *   - while a run with that id is going, a second start attaches to it
 *     (conflict policy FAIL, then we fetch the running one: unlike USE_EXISTING this
 *     tells the caller it attached, `run.existing`);
 *   - after it completed, a second start attaches to the completed run and returns its
 *     result (reuse policy ALLOW_DUPLICATE_FAILED_ONLY: only a failed, cancelled or
 *     terminated run may be started again under the same id);
 *   - `rerun: true` recomputes a completed window on purpose (reuse ALLOW_DUPLICATE),
 *     e.g. after late data arrived; a running one is still attached to, never doubled.
 * Temporal remembers closed runs for the namespace's retention period; beyond it the
 * feature store's own idempotency (a re-run commits no new rows) is the guarantee.
 */
import { Client, Connection, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { loadConfig, type FtiConfig } from '../core/config.ts';
import { taskQueue } from '../core/task-queues.ts';
import { PipelineRun, type PipelineWorkflow, type WaitOptions } from './pipeline-run.ts';
import { pipelineSpec, type PipelineInput, type PipelineName, type PipelineOutput } from './pipelines.ts';
import { FtiSchedules } from './schedules.ts';

export type ConnectOptions = Partial<Pick<FtiConfig, 'temporalAddress' | 'temporalNamespace' | 'taskQueuePrefix'>>;

export interface StartOptions {
  /** Use this workflow id instead of the derived one. */
  workflowId?: string;
  /** Run again even if a run with this id already completed (never while one is running). */
  rerun?: boolean;
}

/** A bad input, caught before anything was started. */
export class PipelineInputError extends Error {
  override name = 'PipelineInputError';
}

export class FtiClient {
  readonly schedules: FtiSchedules;

  private constructor(
    /** The underlying Temporal client, for anything this one does not cover. */
    readonly temporal: Client,
    /** Task-queue prefix of the deployment (FTI_TASK_QUEUE_PREFIX). */
    readonly taskQueuePrefix: string,
    private readonly ownedConnection: Connection | undefined,
  ) {
    this.schedules = new FtiSchedules(temporal, (p) => this.taskQueue(p), taskQueuePrefix);
  }

  /** Connects to Temporal; anything not given comes from the environment (core/config.ts). */
  static async connect(options: ConnectOptions = {}): Promise<FtiClient> {
    const env = loadConfig();
    const connection = await Connection.connect({ address: options.temporalAddress ?? env.temporalAddress });
    const client = new Client({ connection, namespace: options.temporalNamespace ?? env.temporalNamespace });
    return new FtiClient(client, options.taskQueuePrefix ?? env.taskQueuePrefix, connection);
  }

  /** Wraps a Temporal client the caller owns (and closes). */
  static fromClient(client: Client, { taskQueuePrefix = '' }: { taskQueuePrefix?: string } = {}): FtiClient {
    return new FtiClient(client, taskQueuePrefix, undefined);
  }

  /** The task queue a pipeline's workflow runs on, e.g. `fti-cpu`. */
  taskQueue(pipeline: PipelineName): string {
    return taskQueue(pipelineSpec(pipeline).pool, this.taskQueuePrefix);
  }

  /** The workflow id a start with this input gets (unless one is given). */
  workflowId<P extends PipelineName>(pipeline: P, input: PipelineInput<P>, now: Date = new Date()): string {
    const spec = pipelineSpec(pipeline);
    return spec.runKey(input) ?? `${spec.idStem(input)}:run-${now.toISOString()}`;
  }

  /** Starts a run, or attaches to the run that already has its workflow id (see the top of this file). */
  async start<P extends PipelineName>(pipeline: P, input: PipelineInput<P>, options: StartOptions = {}): Promise<PipelineRun<P>> {
    const spec = pipelineSpec(pipeline);
    const problem = spec.validate(input);
    if (problem) throw new PipelineInputError(problem);
    const workflowId = options.workflowId ?? this.workflowId(pipeline, input);
    try {
      const handle = await this.temporal.workflow.start<PipelineWorkflow<P>>(spec.workflowType, {
        taskQueue: this.taskQueue(pipeline),
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: options.rerun ? 'ALLOW_DUPLICATE' : 'ALLOW_DUPLICATE_FAILED_ONLY',
      });
      return this.runOf(pipeline, workflowId, handle.firstExecutionRunId, false);
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
      const existing = await this.temporal.workflow.getHandle(workflowId).describe();
      if (existing.type !== spec.workflowType) {
        throw new Error(`workflow id ${workflowId} is taken by a ${existing.type} run, not a ${spec.workflowType} run`);
      }
      return this.runOf(pipeline, workflowId, existing.runId, true);
    }
  }

  /** Start and wait: the pipeline's result, or a WorkflowFailedError (see describeRunFailure). */
  async run<P extends PipelineName>(pipeline: P, input: PipelineInput<P>, options: StartOptions & WaitOptions = {}): Promise<PipelineOutput<P>> {
    const run = await this.start(pipeline, input, options);
    return run.wait(options);
  }

  /** A run started elsewhere (CLI, UI, schedule), by workflow id (and run id; default the latest run). */
  async getRun<P extends PipelineName>(pipeline: P, workflowId: string, runId?: string): Promise<PipelineRun<P>> {
    const description = await this.temporal.workflow.getHandle(workflowId, runId).describe();
    const spec = pipelineSpec(pipeline);
    if (description.type !== spec.workflowType) throw new Error(`${workflowId} is a ${description.type} run, not a ${spec.workflowType} run`);
    return this.runOf(pipeline, workflowId, description.runId, true);
  }

  /** Closes the connection if this client opened it. */
  async close(): Promise<void> {
    await this.ownedConnection?.close();
  }

  private runOf<P extends PipelineName>(pipeline: P, workflowId: string, runId: string, existing: boolean): PipelineRun<P> {
    const handle = this.temporal.workflow.getHandle<PipelineWorkflow<P>>(workflowId, runId);
    return new PipelineRun(pipeline, pipelineSpec(pipeline).workflowType, workflowId, runId, existing, handle, this.temporal);
  }
}
