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
    const span = Math.max(...intervals.map(([, b]) => b)) - Math.min(...intervals.map(([a]) => a));
    const share = 100 * (1 - busy / Math.max(span, busy));
    ctx.log(`orchestration run ${i + 1}/${RUNS}${i < 0 ? ' (warm-up)' : ''}`, { wallMs: Math.round(wall), activityMs: Math.round(busy), overheadPercent: round(share, 1) });
    if (i >= 0) {
      shares.push(share);
      walls.push(wall / 1000);
    }
  }
  return [
    {
      name: 'orchestration_overhead',
      value: round(median(shares), 1),
      unit: '%',
      details: { of: 'ftiPipeline on 3 days of flights: time between the first activity start and the last activity end with no activity running', wallSeconds: walls.map((w) => round(w, 1)), runs: shares.map((s) => round(s, 1)) },
    },
  ];
};

/** [started, completed] of every activity attempt that completed, in ms since the epoch. */
async function activityIntervals(handle: WorkflowHandle): Promise<Array<[number, number]>> {
  const history = await handle.fetchHistory();
  const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined) => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
  const started = new Map<string, number>();
  const out: Array<[number, number]> = [];
  for (const e of history.events ?? []) {
    if (e.activityTaskStartedEventAttributes) started.set(String(e.activityTaskStartedEventAttributes.scheduledEventId), ms(e.eventTime));
    const done = e.activityTaskCompletedEventAttributes;
    if (done) {
      const from = started.get(String(done.scheduledEventId));
      if (from !== undefined) out.push([from, ms(e.eventTime)]);
    }
  }
  return out;
}

function unionLength(intervals: Array<[number, number]>): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let [from, to] = sorted[0] ?? [0, 0];
  for (const [a, b] of sorted.slice(1)) {
    if (a > to) {
      total += to - from;
      [from, to] = [a, b];
    } else to = Math.max(to, b);
  }
  return total + (to - from);
}

export default orchestrationPart;
