/**
 * Pipelines on Temporal Schedules. A schedule's action is the pipeline with
 * `scheduleWindow` in its input; each run turns its fire time into its data window
 * [fire time - window, fire time) (workflows/schedule-window.ts), so
 *   - a live fire computes the window that just ended,
 *   - `trigger` computes the window that ends now,
 *   - `backfill` over a data range recomputes exactly the windows in it.
 * Defaults (interval, window, overlap policy, catch-up window) come from the pipeline
 * table; the README's "Schedules" section explains the choices.
 */
import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
  type ScheduleExecutionResult,
  type ScheduleHandle,
  type ScheduleSpecDescription,
  type ScheduleSummary,
} from '@temporalio/client';
import { durationMs, isDuration, type Duration } from '../core/duration.ts';
import { formatMs, planBackfill, type BackfillPlan, type IntervalSpecMs } from './backfill.ts';
import { PIPELINES, pipelineOfWorkflowType, type OverlapPolicy, type PipelineInput, type PipelineName } from './pipelines.ts';

/** Memo keys that mark a schedule as ours and say which deployment (task queue) it feeds. */
const MEMO_PIPELINE = 'ftiPipeline';
const MEMO_TASK_QUEUE = 'ftiTaskQueue';

export interface CreateScheduleOptions {
  /** Default: `<prefix><pipeline id stem>`, e.g. `features:clicks:v1`. */
  scheduleId?: string;
  every?: Duration;
  /** Shift of the fire times from the epoch-aligned grid, e.g. every 1d offset 2h fires at 02:00 UTC. */
  offset?: Duration;
  /** Data window of each run; default: the pipeline's (features and inference: the interval). */
  window?: Duration;
  overlap?: OverlapPolicy;
  catchupWindow?: Duration;
  /** Create it paused: nothing fires until unpaused (trigger and backfill still work). */
  paused?: boolean;
  note?: string;
}

export interface ScheduledRun {
  /** The fire time the run's window is derived from. */
  scheduledAt: Date;
  takenAt: Date;
  workflowId: string;
  runId: string;
}

/** A schedule as `fti schedule list` shows it. */
export interface ScheduleSummaryView {
  scheduleId: string;
  /** Undefined for a schedule of a workflow type that is not one of the pipelines. */
  pipeline: PipelineName | undefined;
  workflowType: string | undefined;
  every: string | undefined;
  offset: string | undefined;
  paused: boolean;
  note: string | undefined;
  nextFires: Date[];
  recentRuns: ScheduledRun[];
}

/** A schedule as `fti schedule describe` shows it. */
export interface ScheduleView extends ScheduleSummaryView {
  taskQueue: string;
  /** The data window of each run (the input's scheduleWindow), if the pipeline has one. */
  window: string | undefined;
  overlap: OverlapPolicy;
  catchupWindow: string;
  input: unknown;
  runningRuns: Array<{ workflowId: string; runId: string }>;
  actionsTaken: number;
  skippedForOverlap: number;
  missedCatchupWindow: number;
  createdAt: Date;
}

export interface BackfillResult extends BackfillPlan {
  scheduleId: string;
  overlap: OverlapPolicy;
}

export class FtiSchedules {
  constructor(
    private readonly temporal: Client,
    private readonly taskQueueOf: (pipeline: PipelineName) => string,
    private readonly prefix: string,
  ) {}

  /** Creates a schedule that runs `pipeline` with `input` (plus its schedule window). */
  async create<P extends PipelineName>(pipeline: P, input: PipelineInput<P>, options: CreateScheduleOptions = {}): Promise<ScheduleView> {
    const spec = PIPELINES[pipeline];
    const every = options.every ?? spec.schedule.every;
    // Windows that tile time follow a custom interval; a sliding span (training) does not.
    const window = options.window ?? (spec.schedule.windowFollowsInterval && options.every ? options.every : spec.schedule.window);
    const action = spec.withScheduleWindow(input, window);
    const problem = spec.validate(action);
    if (problem) throw new Error(problem);
    for (const [name, value] of Object.entries({ every, offset: options.offset, window, catchupWindow: options.catchupWindow })) {
      if (value !== undefined && !isDuration(value)) throw new Error(`${name} must be a duration such as 30m, 1h or 1d, got ${JSON.stringify(value)}`);
    }
    if (durationMs(window) < 60_000) throw new Error('a schedule window is at least a minute');

    const scheduleId = options.scheduleId ?? `${this.prefix}${spec.idStem(input)}`;
    const taskQueue = this.taskQueueOf(pipeline);
    try {
      await this.temporal.schedule.create({
        scheduleId,
        spec: { intervals: [{ every, offset: options.offset }] },
        action: { type: 'startWorkflow', workflowType: spec.workflowType, taskQueue, args: [action], workflowId: scheduleId },
        policies: { overlap: options.overlap ?? spec.schedule.overlap, catchupWindow: options.catchupWindow ?? spec.schedule.catchupWindow },
        memo: { [MEMO_PIPELINE]: pipeline, [MEMO_TASK_QUEUE]: taskQueue },
        state: { paused: options.paused ?? false, note: options.note },
      });
    } catch (err) {
      if (err instanceof ScheduleAlreadyRunning) throw new Error(`schedule ${scheduleId} already exists: describe it, or delete it first`);
      throw err;
    }
    return this.describe(scheduleId);
  }

  /**
   * This deployment's schedules (those whose runs go to its task queues), or every
   * schedule in the namespace with `all`. Listing is eventually consistent: a schedule
   * created a moment ago may take a second to appear.
   */
  async list({ all = false }: { all?: boolean } = {}): Promise<ScheduleSummaryView[]> {
    const queues = new Set(Object.keys(PIPELINES).map((p) => this.taskQueueOf(p as PipelineName)));
    const out: ScheduleSummaryView[] = [];
    for await (const s of this.temporal.schedule.list()) {
      if (!all && !queues.has(String(s.memo?.[MEMO_TASK_QUEUE] ?? ''))) continue;
      out.push(toSummaryView(s));
    }
    return out.sort((a, b) => a.scheduleId.localeCompare(b.scheduleId));
  }

  async describe(scheduleId: string): Promise<ScheduleView> {
    return toView(await this.call(scheduleId, (h) => h.describe()));
  }

  async pause(scheduleId: string, note = 'paused with fti'): Promise<ScheduleView> {
    await this.call(scheduleId, (h) => h.pause(note));
    return this.describe(scheduleId);
  }

  async unpause(scheduleId: string, note = 'unpaused with fti'): Promise<ScheduleView> {
    await this.call(scheduleId, (h) => h.unpause(note));
    return this.describe(scheduleId);
  }

  /** Starts one run now; its window is the one that ends now. Works on a paused schedule too. */
  async trigger(scheduleId: string, overlap?: OverlapPolicy): Promise<{ scheduleId: string; triggeredAt: Date }> {
    const triggeredAt = new Date();
    await this.call(scheduleId, (h) => h.trigger(overlap));
    return { scheduleId, triggeredAt };
  }

  /**
   * Recomputes the data range [from, to): one run per window in it, each fired "as
   * of" its window's end. Both ends must line up with the schedule's windows.
   * Works on a paused schedule too.
   */
  async backfill(scheduleId: string, range: { from: Date; to: Date; overlap?: OverlapPolicy }): Promise<BackfillResult> {
    const description = await this.call(scheduleId, (h) => h.describe());
    const interval = singleInterval(description.spec, scheduleId);
    const view = toView(description);
    const windowMs = view.window && isDuration(view.window) ? durationMs(view.window) : interval.every;
    const plan = planBackfill(interval, windowMs, range.from, range.to);
    const overlap = range.overlap ?? (view.pipeline ? PIPELINES[view.pipeline].schedule.backfillOverlap : 'ALLOW_ALL');
    await this.call(scheduleId, (h) => h.backfill({ ...plan.temporalRange, overlap }));
    return { scheduleId, overlap, ...plan };
  }

  async delete(scheduleId: string): Promise<void> {
    await this.call(scheduleId, (h) => h.delete());
  }

  private async call<T>(scheduleId: string, fn: (handle: ScheduleHandle) => Promise<T>): Promise<T> {
    try {
      return await fn(this.temporal.schedule.getHandle(scheduleId));
    } catch (err) {
      if (err instanceof ScheduleNotFoundError) throw new Error(`no schedule ${scheduleId}`);
      throw err;
    }
  }
}

function singleInterval(spec: ScheduleSpecDescription, scheduleId: string): IntervalSpecMs {
  const [interval, ...more] = spec.intervals ?? [];
  if (!interval || more.length || spec.calendars?.length) {
    throw new Error(`schedule ${scheduleId} is not a single-interval schedule (as fti creates them); backfill it with the Temporal CLI`);
  }
  // The SDK leaves a zero offset undefined.
  return { every: interval.every, offset: interval.offset ?? 0 };
}

function toSummaryView(s: ScheduleSummary | ScheduleDescription): ScheduleSummaryView {
  const workflowType = s.action?.workflowType;
  const memoPipeline = s.memo?.[MEMO_PIPELINE];
  const pipeline = typeof memoPipeline === 'string' && memoPipeline in PIPELINES ? (memoPipeline as PipelineName) : workflowType ? pipelineOfWorkflowType(workflowType) : undefined;
  const interval = s.spec?.intervals?.[0];
  return {
    scheduleId: s.scheduleId,
    pipeline,
    workflowType,
    every: interval ? formatMs(interval.every) : undefined,
    offset: interval?.offset ? formatMs(interval.offset) : undefined,
    paused: s.state.paused,
    note: s.state.note || undefined,
    nextFires: s.info.nextActionTimes,
    recentRuns: s.info.recentActions.map(toRun),
  };
}

function toView(d: ScheduleDescription): ScheduleView {
  const input = d.action.args?.[0];
  const window = isRecord(input) && typeof input.scheduleWindow === 'string' ? input.scheduleWindow : undefined;
  return {
    ...toSummaryView(d),
    taskQueue: d.action.taskQueue,
    window,
    // Temporal's default when unspecified.
    overlap: d.policies.overlap ?? 'SKIP',
    catchupWindow: formatMs(d.policies.catchupWindow),
    input,
    runningRuns: d.info.runningActions.map((a) => ({ workflowId: a.workflow.workflowId, runId: a.workflow.firstExecutionRunId })),
    actionsTaken: d.info.numActionsTaken,
    skippedForOverlap: d.info.numActionsSkippedOverlap,
    missedCatchupWindow: d.info.numActionsMissedCatchupWindow,
    createdAt: d.info.createdAt,
  };
}

function toRun(a: ScheduleExecutionResult): ScheduledRun {
  return { scheduledAt: a.scheduledAt, takenAt: a.takenAt, workflowId: a.action.workflow.workflowId, runId: a.action.workflow.firstExecutionRunId };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
