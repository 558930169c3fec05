/**
 * Orchestration overhead: the share of a full ftiPipeline run's wall time during
 * which no activity of the chain (features, training, inference, in the parent and
 * every child workflow; local activities included, from their markers) was running:
 * scheduling, dispatch, workflow tasks, child starts. Measured on three days of
 * flights, from the workflow histories.
 */
import { performance } from 'node:perf_hooks';
import type { WorkflowHandle } from '@temporalio/client';
import { ftiPipeline } from '../../workflows/index.ts';
import { flightsFixture } from '../flights-fixture.ts';
import { median, round, type BenchPart } from '../harness.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 3);

const orchestrationPart: BenchPart = async (ctx) => {
  const fixture = await flightsFixture(ctx);
  const shares: number[] = [];
  const walls: number[] = [];
  const idles: number[] = [];
  const gaps: SplitGap[][] = [];
  for (let i = -1; i < RUNS; i++) {
    const workflowId = `bench-orchestration-${Date.now()}-${i}`;
    const t0 = performance.now();
    await fixture.client.workflow.execute(ftiPipeline, {
      taskQueue: fixture.cpuQueue,
      workflowId,
      args: [
        {
          features: { groups: ['flights', 'airport_delays'], start: '2001-02-01T00:00:00Z', end: '2001-02-04T00:00:00Z' },
          training: { featureView: 'flight_delays', model: 'bench_chain', start: '2001-02-01T00:00:00Z', end: '2001-02-03T00:00:00Z', params: { hiddenUnits: [16], epochs: 1 } },
          inference: { start: '2001-02-03T00:00:00Z', end: '2001-02-04T00:00:00Z' },
        },
      ],
    });
    const wall = performance.now() - t0;
    const handles: WorkflowHandle[] = [fixture.client.workflow.getHandle(workflowId)];
    for await (const child of fixture.client.workflow.list({ query: `WorkflowId STARTS_WITH "${workflowId}/"` })) handles.push(fixture.client.workflow.getHandle(child.workflowId));
    const timelines = await Promise.all(handles.map(timeline));
    const intervals = timelines.flatMap((t) => t.activities);
    const workflowTasks = timelines.flatMap((t) => t.workflowTasks);
    const busy = unionLength(intervals);
    const span = Math.max(...intervals.map((a) => a.end)) - Math.min(...intervals.map((a) => a.start));
    const idleMs = Math.max(0, span - busy);
    const share = (100 * idleMs) / Math.max(span, busy);
    const runGaps = idleGaps(intervals).map((gap) => ({ ...gap, split: splitGap(gap, workflowTasks), tasks: tasksIn(gap, workflowTasks) }));
    const idle = sumSplits(runGaps);
    ctx.log(`orchestration run ${i + 1}/${RUNS}${i < 0 ? ' (warm-up)' : ''}`, { wallMs: Math.round(wall), activityMs: Math.round(busy), overheadPercent: round(share, 1), gaps: runGaps.length, idle });
    if (i >= 0) {
      shares.push(share);
      walls.push(wall / 1000);
      idles.push(idleMs);
      gaps.push(runGaps);
    }
  }
  const medianGaps = gaps[shares.indexOf(median(shares))] ?? [];
  return [
    {
      name: 'orchestration_overhead',
      value: round(median(shares), 1),
      unit: '%',
      details: {
        of: 'ftiPipeline on 3 days of flights: time between the first activity start and the last activity end with no activity (local or not) running',
        wallSeconds: walls.map((w) => round(w, 1)),
        runs: shares.map((s) => round(s, 1)),
        // Where the idle time goes: every gap of the median run, between which activities.
        gapsMs: medianGaps.map(({ from, to, split, after, before, tasks }) => `${round(to - from, 1)} ms (task queued ${round(split.workflowTaskQueued, 1)}, running ${round(split.workflowTaskRunning, 1)}, other ${round(split.other, 1)}): ${after} -> ${before}; tasks: ${tasks.join(', ')}`),
        // The same run's idle time split by what Temporal was doing (summed over its gaps).
        idleMs: sumSplits(medianGaps),
      },
    },
    {
      // The numerator alone: it does not move when the activities run faster or slower,
      // so it compares two versions of the orchestration better than the share does.
      name: 'orchestration_idle',
      value: round(median(idles), 0),
      unit: 'ms',
      details: { of: 'the same runs: milliseconds between the first activity start and the last activity end with no activity (local or not) running', runs: idles.map((ms) => round(ms, 0)) },
    },
  ];
};

interface Span {
  start: number;
  end: number;
}

interface ActivityInterval extends Span {
  /** `<workflow id after the run's>/<activity type>`. */
  label: string;
}

/** A workflow task: scheduled (queued on the server), started (a worker polled it), completed (the worker answered). */
interface WorkflowTaskSpan {
  /** The workflow it belongs to (`fti` for the parent, else the child's id after the run's). */
  workflow: string;
  scheduled: number;
  started: number;
  completed: number;
}

/**
 * Idle time (no activity running) by what filled it: a workflow task waiting for a
 * worker's poll, a workflow task the worker was running (from poll to answer, so its
 * two RPCs too), and the rest (the server between events: activity dispatch, child
 * starts and completions). Overlaps across workflows count once, in that order.
 */
interface IdleBreakdown {
  workflowTaskQueued: number;
  workflowTaskRunning: number;
  other: number;
}

interface Gap {
  from: number;
  to: number;
  after: string;
  before: string;
}

interface SplitGap extends Gap {
  split: IdleBreakdown;
  /** The workflow tasks that overlap the gap, in order: whose, and how long each was queued and running (ms). */
  tasks: string[];
}

/** Every span of the run with no activity running: how long, after which activity ended and before which started. */
function idleGaps(intervals: ActivityInterval[]): Gap[] {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  const out: Gap[] = [];
  let last = sorted[0];
  for (const next of sorted.slice(1)) {
    if (!last) break;
    if (next.start > last.end) out.push({ from: last.end, to: next.start, after: last.label, before: next.label });
    if (next.end > last.end) last = next;
  }
  return out;
}

/** One gap's idle time by what filled it (see IdleBreakdown), in ms. */
function splitGap({ from, to }: Gap, tasks: WorkflowTaskSpan[]): IdleBreakdown {
  const within = (spans: Span[]) => unionLength(spans.map((t) => ({ start: Math.max(t.start, from), end: Math.min(t.end, to) })).filter((t) => t.end > t.start));
  const running = within(tasks.map((t) => ({ start: t.started, end: t.completed })));
  const queuedOrRunning = within(tasks.map((t) => ({ start: t.scheduled, end: t.completed })));
  return { workflowTaskQueued: queuedOrRunning - running, workflowTaskRunning: running, other: to - from - queuedOrRunning };
}

/** Each workflow task that overlaps a gap: `<workflow> <queued>+<running> ms`, in the order they were queued. */
function tasksIn({ from, to }: Gap, tasks: WorkflowTaskSpan[]): string[] {
  return tasks
    .filter((t) => t.completed > from && t.scheduled < to)
    .sort((a, b) => a.scheduled - b.scheduled)
    .map((t) => `${t.workflow} ${round(t.started - t.scheduled, 1)}+${round(t.completed - t.started, 1)} ms`);
}

function sumSplits(gaps: SplitGap[]): IdleBreakdown {
  const sum = (key: keyof IdleBreakdown) => round(gaps.reduce((total, gap) => total + gap.split[key], 0), 1);
  return { workflowTaskQueued: sum('workflowTaskQueued'), workflowTaskRunning: sum('workflowTaskRunning'), other: sum('other') };
}

/**
 * Every activity attempt that completed ([started, completed], in ms since the epoch),
 * every local activity that completed (from its marker, see localActivity) and every
 * workflow task that completed.
 */
async function timeline(handle: WorkflowHandle): Promise<{ activities: ActivityInterval[]; workflowTasks: WorkflowTaskSpan[] }> {
  const history = await handle.fetchHistory();
  const workflow = handle.workflowId.includes('/') ? handle.workflowId.slice(handle.workflowId.indexOf('/') + 1) : 'fti';
  const types = new Map<string, string>();
  const started = new Map<string, number>();
  const out: ActivityInterval[] = [];
  const taskScheduled = new Map<string, number>();
  const taskStarted = new Map<string, number>();
  const workflowTasks: WorkflowTaskSpan[] = [];
  for (const e of history.events ?? []) {
    if (e.workflowTaskScheduledEventAttributes) taskScheduled.set(String(e.eventId), ms(e.eventTime));
    if (e.workflowTaskStartedEventAttributes) taskStarted.set(String(e.eventId), ms(e.eventTime));
    const answered = e.workflowTaskCompletedEventAttributes;
    if (answered) {
      const queuedAt = taskScheduled.get(String(answered.scheduledEventId));
      const polledAt = taskStarted.get(String(answered.startedEventId));
      if (queuedAt !== undefined && polledAt !== undefined) workflowTasks.push({ workflow, scheduled: queuedAt, started: polledAt, completed: ms(e.eventTime) });
    }
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), ms(e.eventTime));
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const from = started.get(String(done.scheduledEventId));
      if (from !== undefined) out.push({ start: from, end: ms(e.eventTime), label: `${workflow}/${types.get(String(done.scheduledEventId)) ?? '?'}` });
    }
    const local = e.markerRecordedEventAttributes && localActivity(e.markerRecordedEventAttributes, [...taskStarted.values()]);
    if (local) out.push({ ...local, label: `${workflow}/${local.type} (local)` });
  }
  return { activities: out, workflowTasks };
}

type Timestamp = { seconds?: unknown; nanos?: number | null } | null | undefined;
const ms = (t: Timestamp) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

/** The part of a local activity marker's `data` the bench reads (the SDK core's LocalActivityMarkerData, as JSON). */
interface LocalActivityMarkerData {
  activity_type?: string;
  complete_time?: Timestamp;
  original_schedule_time?: Timestamp;
  backoff?: unknown;
}

type MarkerAttributes = NonNullable<Awaited<ReturnType<WorkflowHandle['fetchHistory']>>['events']>[number]['markerRecordedEventAttributes'];

/**
 * A local activity that completed, as its marker records it: when its workflow task
 * scheduled it (the worker's clock) and how long it ran. The marker's completion time
 * is the workflow's time when it was scheduled (the start of that workflow task) plus
 * the run time, so the run time is that difference and the span is
 * [scheduled, scheduled + run time]. It starts early by the worker's hand-off to its
 * local activity slot (not measured here) and ends as early, so the idle time summed
 * over a run is exact; only its split between the gaps before and after shifts by that
 * much. (On the recorded histories, test/histories/local-steps, every span ends 5-21 ms
 * before its workflow task's answer.) A failed attempt (a failure, or a backoff to retry) counts
 * as idle, like a failed activity attempt.
 */
function localActivity(marker: NonNullable<MarkerAttributes>, workflowTasksStarted: number[]): { start: number; end: number; type: string } | undefined {
  if (marker.markerName !== 'core_local_activity' || marker.failure) return undefined;
  const bytes = marker.details?.data?.payloads?.[0]?.data;
  if (!bytes) return undefined;
  const data = JSON.parse(Buffer.from(bytes).toString('utf8')) as LocalActivityMarkerData;
  if (data.backoff || !data.complete_time || !data.original_schedule_time) return undefined;
  const scheduled = ms(data.original_schedule_time);
  const workflowTime = Math.max(...workflowTasksStarted.filter((t) => t <= scheduled));
  if (!Number.isFinite(workflowTime)) return undefined;
  return { start: scheduled, end: scheduled + (ms(data.complete_time) - workflowTime), type: data.activity_type ?? '?' };
}

function unionLength(intervals: Span[]): number {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  let total = 0;
  let from = sorted[0]?.start ?? 0;
  let to = sorted[0]?.end ?? 0;
  for (const { start, end } of sorted.slice(1)) {
    if (start > to) {
      total += to - from;
      [from, to] = [start, end];
    } else to = Math.max(to, end);
  }
  return total + (to - from);
}

export default orchestrationPart;
