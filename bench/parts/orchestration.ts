/**
 * Orchestration overhead: the share of a full ftiPipeline run's wall time during
 * which no activity of the chain (features, training, inference, in the parent and
 * every child workflow) was running: scheduling, dispatch, workflow tasks, child
 * starts. Measured on three days of flights, from the workflow histories.
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
  const gaps: Gap[][] = [];
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
    const intervals = (await Promise.all(handles.map(activityIntervals))).flat();
    const busy = unionLength(intervals);
    const span = Math.max(...intervals.map((a) => a.end)) - Math.min(...intervals.map((a) => a.start));
    const share = 100 * (1 - busy / Math.max(span, busy));
    const runGaps = idleGaps(intervals);
    ctx.log(`orchestration run ${i + 1}/${RUNS}${i < 0 ? ' (warm-up)' : ''}`, { wallMs: Math.round(wall), activityMs: Math.round(busy), overheadPercent: round(share, 1), gaps: runGaps.length });
    if (i >= 0) {
      shares.push(share);
      walls.push(wall / 1000);
      gaps.push(runGaps);
    }
  }
  return [
    {
      name: 'orchestration_overhead',
      value: round(median(shares), 1),
      unit: '%',
      details: {
        of: 'ftiPipeline on 3 days of flights: time between the first activity start and the last activity end with no activity running',
        wallSeconds: walls.map((w) => round(w, 1)),
        runs: shares.map((s) => round(s, 1)),
        // Where the idle time goes: every gap of the median run, between which activities.
        gapsMs: (gaps[shares.indexOf(median(shares))] ?? []).map((g) => `${round(g.ms, 1)} ms: ${g.after} -> ${g.before}`),
      },
    },
  ];
};

interface ActivityInterval {
  start: number;
  end: number;
  /** `<workflow id after the run's>/<activity type>`. */
  label: string;
}

interface Gap {
  ms: number;
  after: string;
  before: string;
}

/** Every span of the run with no activity running: how long, after which activity ended and before which started. */
function idleGaps(intervals: ActivityInterval[]): Gap[] {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  const out: Gap[] = [];
  let last = sorted[0];
  for (const next of sorted.slice(1)) {
    if (!last) break;
    if (next.start > last.end) out.push({ ms: next.start - last.end, after: last.label, before: next.label });
    if (next.end > last.end) last = next;
  }
  return out;
}

/** [started, completed] of every activity attempt that completed, in ms since the epoch. */
async function activityIntervals(handle: WorkflowHandle): Promise<ActivityInterval[]> {
  const history = await handle.fetchHistory();
  const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
  const workflow = handle.workflowId.includes('/') ? handle.workflowId.slice(handle.workflowId.indexOf('/') + 1) : 'fti';
  const types = new Map<string, string>();
  const started = new Map<string, number>();
  const out: ActivityInterval[] = [];
  for (const e of history.events ?? []) {
    const scheduled = e.activityTaskScheduledEventAttributes;
    if (scheduled) types.set(String(e.eventId), scheduled.activityType?.name ?? '?');
    if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), ms(e.eventTime));
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const from = started.get(String(done.scheduledEventId));
      if (from !== undefined) out.push({ start: from, end: ms(e.eventTime), label: `${workflow}/${types.get(String(done.scheduledEventId)) ?? '?'}` });
    }
  }
  return out;
}

function unionLength(intervals: ActivityInterval[]): number {
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
