/**
 * `fti schedule …`: pipelines on Temporal Schedules (client/schedules.ts). Defaults
 * per pipeline come from client/pipelines.ts: features hourly with 1h windows.
 * Human-readable by default; `--json` prints one JSON document for scripts.
 */
import { InvalidArgumentError, Option, type Command } from 'commander';
import { isDuration, type Duration } from '../../core/duration.ts';
import { PIPELINES, PIPELINE_NAMES, type OverlapPolicy, type PipelineName, type PipelineSpec } from '../../client/pipelines.ts';
import type { BackfillResult, CreateScheduleOptions, ScheduledRun, ScheduleSummaryView, ScheduleView } from '../../client/schedules.ts';
import { addPipelineFlags, flagValues, withFtiClient } from './run.ts';
import { keyValues, table, time } from '../format.ts';

const OVERLAP_POLICIES = ['SKIP', 'BUFFER_ONE', 'BUFFER_ALL', 'CANCEL_OTHER', 'TERMINATE_OTHER', 'ALLOW_ALL'] as const satisfies readonly OverlapPolicy[];

interface JsonOption {
  json?: boolean;
}

/** The client's schedule options as flags: `--id` names the schedule. */
type CreateOptions = JsonOption & Omit<CreateScheduleOptions, 'scheduleId'> & { id?: string };

export function registerScheduleCommands(program: Command): void {
  const schedule = program.command('schedule').description('run pipelines on Temporal Schedules: each fire computes the window that just ended');

  const create = schedule.command('create').description('create a schedule for a pipeline');
  // One subcommand per entry of client/pipelines.ts: feature, train, infer.
  for (const name of PIPELINE_NAMES) addCreateCommand(create, PIPELINES[name]);

  schedule
    .command('list')
    .description("this deployment's schedules (--all: every schedule in the namespace)")
    .option('--all', 'include schedules of other deployments and non-fti schedules')
    .option('--json', 'print JSON')
    .action(async (opts: JsonOption & { all?: boolean }) => {
      await withFtiClient(async (fti) => print(opts, await fti.schedules.list({ all: opts.all }), formatList));
    });

  schedule
    .command('describe')
    .description('show a schedule: interval, window, policies, recent and next runs')
    .argument('<scheduleId>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: JsonOption) => {
      await withFtiClient(async (fti) => print(opts, await fti.schedules.describe(id), formatView));
    });

  for (const verb of ['pause', 'unpause'] as const) {
    schedule
      .command(verb)
      .description(verb === 'pause' ? 'stop firing (trigger and backfill still work)' : 'resume firing')
      .argument('<scheduleId>')
      .option('--note <text>', 'why, shown in describe and the Temporal UI')
      .option('--json', 'print JSON')
      .action(async (id: string, opts: JsonOption & { note?: string }) => {
        await withFtiClient(async (fti) => print(opts, await fti.schedules[verb](id, opts.note), (v) => `${v.scheduleId} ${v.paused ? 'paused' : 'running'}${v.note ? ` (${v.note})` : ''}`));
      });
  }

  schedule
    .command('trigger')
    .description('run once now, for the window that ends now')
    .argument('<scheduleId>')
    .addOption(overlapOption('overlap policy for this run (default: the schedule\'s)'))
    .option('--json', 'print JSON')
    .action(async (id: string, opts: JsonOption & { overlap?: OverlapPolicy }) => {
      await withFtiClient(async (fti) =>
        print(opts, await fti.schedules.trigger(id, opts.overlap), (t) => `triggered ${t.scheduleId} at ${time(t.triggeredAt)}: one run for the window ending then`),
      );
    });

  schedule
    .command('backfill')
    .description('recompute the data range [--from, --to): one run per window in it')
    .argument('<scheduleId>')
    .requiredOption('--from <iso>', 'start of the first window, e.g. 2001-01-03T00:00:00Z', parseTime)
    .requiredOption('--to <iso>', 'end of the last window (exclusive)', parseTime)
    .addOption(overlapOption("overlap policy for the backfill's runs (default: the pipeline's backfill policy)"))
    .option('--json', 'print JSON')
    .action(async (id: string, opts: JsonOption & { from: Date; to: Date; overlap?: OverlapPolicy }) => {
      await withFtiClient(async (fti) => print(opts, await fti.schedules.backfill(id, opts), formatBackfill));
    });

  schedule
    .command('delete')
    .description('delete a schedule (runs it started are not affected)')
    .argument('<scheduleId>')
    .option('--json', 'print JSON')
    .action(async (id: string, opts: JsonOption) => {
      await withFtiClient(async (fti) => {
        await fti.schedules.delete(id);
        print(opts, { scheduleId: id, deleted: true }, () => `deleted ${id}`);
      });
    });
}

function addCreateCommand<P extends PipelineName>(parent: Command, spec: PipelineSpec<P>): void {
  const d = spec.schedule;
  const command = parent.command(spec.name).description(`schedule ${spec.workflowType} (default: every ${d.every}, ${d.window} windows, overlap ${d.overlap})`);
  addPipelineFlags(command, spec, 'schedule');
  command
    .option('--id <scheduleId>', 'schedule id (default: derived from the inputs, like the workflow ids of fti run)')
    .option('--every <duration>', `interval between runs, aligned to the epoch (UTC) (default: ${d.every})`, parseDuration)
    .option('--offset <duration>', 'shift the fire times, e.g. --every 1d --offset 2h fires at 02:00 UTC', parseDuration)
    .option('--window <duration>', `data window of each run (default: ${d.windowFollowsInterval ? `${d.window}, or the --every interval` : d.window})`, parseDuration)
    .addOption(overlapOption(`when a fire comes while a run is going (default: ${d.overlap})`))
    .option('--catchup-window <duration>', `how late a missed fire may still run (default: ${d.catchupWindow})`, parseDuration)
    .option('--paused', 'create it paused')
    .option('--note <text>', 'a note, shown in describe and the Temporal UI')
    .option('--json', 'print JSON')
    .action(async (opts: Record<string, unknown>) => {
      const o = opts as CreateOptions;
      const input = spec.fromFlags(flagValues(opts));
      await withFtiClient(async (fti) => {
        const view = await fti.schedules.create(spec.name, input, {
          scheduleId: o.id,
          every: o.every,
          offset: o.offset,
          window: o.window,
          overlap: o.overlap,
          catchupWindow: o.catchupWindow,
          paused: o.paused,
          note: o.note,
        });
        print(o, view, (v) => `created ${v.scheduleId}\n${formatView(v)}`);
      });
    });
}

function overlapOption(description: string): Option {
  return new Option('--overlap <policy>', description).choices(OVERLAP_POLICIES);
}

function parseDuration(value: string): Duration {
  if (!isDuration(value)) throw new InvalidArgumentError('expected a duration such as 30m, 1h or 1d');
  return value;
}

function parseTime(value: string): Date {
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new InvalidArgumentError('expected an ISO-8601 time such as 2001-01-03T00:00:00Z');
  return new Date(ms);
}

function print<T>(opts: JsonOption, value: T, format: (value: T) => string): void {
  console.log(opts.json ? JSON.stringify(value, null, 2) : format(value));
}

// ---- human-readable output ----

function formatList(schedules: ScheduleSummaryView[]): string {
  if (schedules.length === 0) return 'no schedules';
  return table(
    ['SCHEDULE', 'PIPELINE', 'EVERY', 'STATE', 'NEXT RUN', 'LAST RUN'],
    schedules.map((s) => [
      s.scheduleId,
      s.pipeline ?? s.workflowType ?? '-',
      s.every ? `${s.every}${s.offset ? `+${s.offset}` : ''}` : '-',
      s.paused ? 'paused' : 'active',
      s.paused ? '-' : s.nextFires[0] ? time(s.nextFires[0]) : '-',
      lastRun(s.recentRuns),
    ]),
  );
}

function formatView(v: ScheduleView): string {
  const rows: Array<[string, string]> = [
    ['schedule', v.scheduleId],
    ['pipeline', `${v.pipeline ?? '-'} (workflow ${v.workflowType ?? '-'} on ${v.taskQueue})`],
    ['every', `${v.every ?? '-'}${v.offset ? `, offset ${v.offset}` : ''}`],
    ['window', v.window ? `${v.window}: a run fired at T computes [T - ${v.window}, T)` : '-'],
    ['overlap', v.overlap],
    ['catch-up window', v.catchupWindow],
    ['state', `${v.paused ? 'paused' : 'active'}${v.note ? ` (${v.note})` : ''}`],
    ['input', JSON.stringify(v.input)],
    ['runs', `${v.actionsTaken} taken, ${v.runningRuns.length} running, ${v.skippedForOverlap} skipped for overlap, ${v.missedCatchupWindow} missed the catch-up window`],
    ['next', v.paused ? '-' : v.nextFires.slice(0, 3).map(time).join(', ') || '-'],
  ];
  v.recentRuns.slice(-5).forEach((r, i) => rows.push([i === 0 ? 'recent' : '', `${time(r.scheduledAt)}  ${r.workflowId}`]));
  return keyValues(rows);
}

function formatBackfill(b: BackfillResult): string {
  const lines = [`backfilling ${b.scheduleId}: ${b.windows.length} run(s), overlap ${b.overlap}`];
  for (const w of b.windows) lines.push(`  [${time(w.start)}, ${time(w.end)})`);
  return lines.join('\n');
}

function lastRun(runs: ScheduledRun[]): string {
  const last = runs.at(-1);
  return last ? time(last.scheduledAt) : '-';
}



