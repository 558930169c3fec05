/**
 * One pipeline run seen from a client: its result, its live progress (the
 * workflow's `progress` query, plus the heartbeat details of its running
 * activities), its status, and cancellation.
 */
import type { Client, WorkflowExecutionStatusName, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { progressQuery, type PipelineProgress } from '../core/progress.ts';
import type { PipelineInput, PipelineName, PipelineOutput } from './pipelines.ts';

export type { PipelineProgress };

/** The workflow signature of a pipeline, for typed handles. */
export type PipelineWorkflow<P extends PipelineName> = (input: PipelineInput<P>) => Promise<PipelineOutput<P>>;

export type RunStatus = WorkflowExecutionStatusName;

export interface RunInfo {
  status: RunStatus;
  taskQueue: string;
  startTime: Date;
  closeTime: Date | undefined;
}

/** A running activity of the run and what it last reported in its heartbeat (`{ stage, rows, total }`, `{ epoch, loss }`…). */
export interface ActivityProgress {
  activity: string;
  attempt: number;
  details: unknown;
}

/**
 * What a progress poll saw: the workflow's own progress and its activities'
 * heartbeats, or no answer yet (no worker has picked the run up).
 */
export type ProgressUpdate =
  | { kind: 'progress'; progress: PipelineProgress; activities: ActivityProgress[]; elapsedMs: number }
  | { kind: 'waiting'; reason: string; elapsedMs: number };

export interface WaitOptions {
  /** Called with each *changed* progress while the run is going. */
  onProgress?: (update: ProgressUpdate) => void;
  /** How often to ask (default 500 ms). */
  intervalMs?: number;
}

export class PipelineRun<P extends PipelineName> {
  constructor(
    readonly pipeline: P,
    readonly workflowType: string,
    readonly workflowId: string,
    /** The run this handle points at (the first run of its chain). */
    readonly runId: string,
    /** True when the start found a run with this workflow id and attached to it instead of starting one. */
    readonly existing: boolean,
    private readonly handle: WorkflowHandle<PipelineWorkflow<P>>,
    private readonly client: Client,
    private readonly startedAt = Date.now(),
  ) {}

  /** The pipeline's result; rejects with WorkflowFailedError (see describeRunFailure) if it failed. */
  result(): Promise<PipelineOutput<P>> {
    return this.handle.result();
  }

  /**
   * The workflow's progress ({ stage, done, total, details }). A query is answered by
   * a worker, so this waits at most `timeoutMs` and then rejects.
   */
  progress({ timeoutMs = 5_000 }: { timeoutMs?: number } = {}): Promise<PipelineProgress> {
    return this.client.withDeadline(Date.now() + timeoutMs, () => this.handle.query(progressQuery));
  }

  /**
   * The run's pending activities and their last heartbeat details (decoded with the
   * default payload converter, which this project uses throughout).
   */
  async activities(): Promise<ActivityProgress[]> {
    const { raw } = await this.handle.describe();
    return (raw.pendingActivities ?? []).map((a) => {
      const payload = a.heartbeatDetails?.payloads?.[0];
      return { activity: a.activityType?.name ?? 'activity', attempt: a.attempt ?? 1, details: payload ? defaultPayloadConverter.fromPayload(payload) : undefined };
    });
  }

  /** Asks the run to stop. The pipeline cleans up (a feature run marks its commit attempt failed) and ends CANCELLED. */
  async cancel(): Promise<void> {
    await this.handle.cancel();
  }

  async status(): Promise<RunStatus> {
    return (await this.info()).status;
  }

  /** Status and times of the run, as the server records them. */
  async info(): Promise<RunInfo> {
    const d = await this.handle.describe();
    return { status: d.status.name, taskQueue: d.taskQueue, startTime: d.startTime, closeTime: d.closeTime };
  }

  /** Waits for the result, reporting progress changes on the way (polling the progress query). */
  async wait({ onProgress, intervalMs = 500 }: WaitOptions = {}): Promise<PipelineOutput<P>> {
    const result = this.result();
    if (!onProgress) return result;
    let settled = false;
    // Marks the promise handled here; the caller still gets its rejection from `return result`.
    const done = result.then(
      () => void (settled = true),
      () => void (settled = true),
    );
    let last = '';
    while (!settled) {
      const update = await this.poll(Math.max(intervalMs * 4, 2_000));
      const key = update.kind === 'progress' ? JSON.stringify([update.progress, update.activities]) : update.reason;
      if (key !== last && !settled) {
        last = key;
        onProgress(update);
      }
      await Promise.race([done, delay(intervalMs)]);
    }
    return result;
  }

  private async poll(timeoutMs: number): Promise<ProgressUpdate> {
    const elapsedMs = Date.now() - this.startedAt;
    try {
      const [progress, activities] = await Promise.all([this.progress({ timeoutMs }), this.activities().catch(() => [])]);
      return { kind: 'progress', progress, activities, elapsedMs };
    } catch {
      // A query needs a worker to answer it: until one picks the run up, there is no progress to show.
      return { kind: 'waiting', reason: 'waiting for a worker to pick the run up', elapsedMs };
    }
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
