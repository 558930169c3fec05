/**
 * `fti run feature|…`: start a pipeline and follow it. On a terminal a live progress
 * line (the workflow's progress query, polled every 500 ms); elsewhere one plain line
 * per change. Progress goes to stderr, the result to stdout: human-readable, or with
 * `--json` one JSON object as the last line. A failed run exits non-zero with its
 * root cause. Ctrl-C stops watching; the run itself goes on (it is durable).
 */
import { Option, type Command } from 'commander';
import { describeRunFailure, formatRunFailure } from '../../client/failures.ts';
import { FtiClient } from '../../client/fti-client.ts';
import { taskQueue } from '../../core/task-queues.ts';
import type { ActivityProgress, PipelineRun, ProgressUpdate } from '../../client/pipeline-run.ts';
import { PIPELINES, PIPELINE_NAMES, pipelineOfWorkflowType, type FlagValues, type PipelineFlag, type PipelineName, type PipelineSpec } from '../../client/pipelines.ts';
import type { PipelineProgress } from '../../core/progress.ts';

interface RunOptions {
  workflowId?: string;
  rerun?: boolean;
  detach?: boolean;
  json?: boolean;
}

export function registerRunCommands(program: Command): void {
  const run = program.command('run').description('start a pipeline and follow it: live progress, then its result');
  // One subcommand per entry of client/pipelines.ts: feature, train, infer, all.
  for (const name of PIPELINE_NAMES) addPipelineRunCommand(run, PIPELINES[name]);

  run
    .command('watch')
    .description('follow a run started elsewhere (UI, schedule, --detach) until it ends')
    .argument('<workflowId>', 'workflow id')
    .option('--json', 'print the result as one JSON object')
    .action(async (workflowId: string, opts: { json?: boolean }) => {
      await withFtiClient(async (fti) => {
        const description = await fti.temporal.workflow.getHandle(workflowId).describe();
        const pipeline = pipelineOfWorkflowType(description.type);
        if (!pipeline) throw new Error(`${workflowId} is a ${description.type} workflow, not a pipeline run`);
        await follow(await fti.getRun(pipeline, workflowId), PIPELINES[pipeline], { json: opts.json });
      });
    });

  run
    .command('cancel')
    .description('ask a run to stop; the pipeline cleans up and ends CANCELLED')
    .argument('<workflowId>', 'workflow id')
    .action(async (workflowId: string) => {
      await withFtiClient(async (fti) => {
        await fti.temporal.workflow.getHandle(workflowId).cancel();
        console.log(`cancellation requested for ${workflowId}`);
      });
    });
}

function addPipelineRunCommand<P extends PipelineName>(parent: Command, spec: PipelineSpec<P>): void {
  const command = parent.command(spec.name).description(`${spec.description} (workflow ${spec.workflowType} on ${taskQueue(spec.pool)})`);
  addPipelineFlags(command, spec, 'run');
  command
    .option('--workflow-id <id>', 'use this workflow id instead of the one derived from the inputs')
    .option('--rerun', 'recompute even if a run with this workflow id already completed')
    .option('--detach', 'start the run, print its workflow id and return')
    .option('--json', 'print the result as one JSON object (the last line of stdout)')
    .action(async (opts: Record<string, unknown>) => {
      const options = opts as RunOptions;
      const input = spec.fromFlags(flagValues(opts));
      await withFtiClient(async (fti) => {
        const run = await fti.start(spec.name, input, { workflowId: options.workflowId, rerun: options.rerun });
        const verb = run.existing ? 'attached to the existing run' : 'started';
        console.error(`${verb} ${spec.workflowType} ${run.workflowId} (run ${run.runId}) on ${fti.taskQueue(spec.name)}`);
        if (options.detach) {
          const started = { workflowId: run.workflowId, runId: run.runId, existing: run.existing, taskQueue: fti.taskQueue(spec.name) };
          console.log(options.json ? JSON.stringify(started) : `follow it with: fti run watch ${run.workflowId}`);
          return;
        }
        await follow(run, spec, options);
      });
    });
}

/** Adds a pipeline's flags to a command; `schedule` leaves out run-only flags (the window comes from the fire time). */
export function addPipelineFlags(command: Command, spec: { flags: PipelineFlag[] }, use: 'run' | 'schedule'): void {
  for (const flag of spec.flags) {
    if (use === 'schedule' && flag.runOnly) continue;
    const option = new Option(flag.flags, flag.description);
    if (flag.required) option.makeOptionMandatory();
    command.addOption(option);
  }
}

/** commander's option values, narrowed to what the pipeline table reads. */
export function flagValues(opts: Record<string, unknown>): FlagValues {
  const out: FlagValues = {};
  for (const [key, value] of Object.entries(opts)) if (typeof value === 'string' || typeof value === 'boolean') out[key] = value;
  return out;
}

export async function withFtiClient<T>(fn: (fti: FtiClient) => Promise<T>): Promise<T> {
  const fti = await FtiClient.connect();
  try {
    return await fn(fti);
  } finally {
    await fti.close();
  }
}

/** Waits for the run with a progress display, prints the result, and fails loudly if the run did. */
async function follow<P extends PipelineName>(run: PipelineRun<P>, spec: PipelineSpec<P>, options: { json?: boolean }): Promise<void> {
  const display = process.stderr.isTTY ? new LiveLine() : new PlainLines();
  const started = Date.now();
  const detach = () => {
    display.stop();
    console.error(`\nstopped watching; the run goes on: ${run.workflowId}\n  follow it: fti run watch ${run.workflowId}\n  stop it:   fti run cancel ${run.workflowId}`);
    process.exit(130);
  };
  process.once('SIGINT', detach);
  try {
    const result = await run.wait({ onProgress: (u) => display.update(u) });
    display.stop();
    if (options.json) console.log(JSON.stringify(result));
    else {
      // The run's own duration (it may have finished before we started watching).
      const { startTime, closeTime } = await run.info().catch(() => ({ startTime: new Date(started), closeTime: new Date() }));
      const took = seconds((closeTime ?? new Date()).getTime() - startTime.getTime());
      console.log(`${spec.workflowType} completed in ${took}: ${spec.summarize(result)}\n  workflow ${run.workflowId} (run ${run.runId})`);
    }
  } catch (err) {
    display.stop();
    const failure = describeRunFailure(err);
    if (options.json) console.log(JSON.stringify({ workflowId: run.workflowId, runId: run.runId, status: failure.kind, failure }));
    throw new Error(`${spec.workflowType} ${run.workflowId} ${failure.kind === 'failed' ? 'failed' : 'ended'}: ${formatRunFailure(failure)}`);
  } finally {
    process.removeListener('SIGINT', detach);
  }
}

interface ProgressDisplay {
  update(update: ProgressUpdate): void;
  stop(): void;
}

/** Not a terminal (CI, pipes, tests): one timestamped line per change. */
class PlainLines implements ProgressDisplay {
  private last = '';

  update(u: ProgressUpdate): void {
    const text = describeUpdate(u);
    if (text === this.last) return;
    this.last = text;
    console.error(`[${seconds(u.elapsedMs).padStart(7)}] ${text}`);
  }

  stop(): void {}
}

/** A terminal: one line, redrawn with a spinner and the elapsed time. */
class LiveLine implements ProgressDisplay {
  private static readonly FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
  private current: ProgressUpdate | undefined;
  private frame = 0;
  private readonly started = Date.now();
  private readonly timer = setInterval(() => this.draw(), 120);

  update(u: ProgressUpdate): void {
    this.current = u;
    this.draw();
  }

  stop(): void {
    clearInterval(this.timer);
    process.stderr.write('\r\x1b[2K');
  }

  private draw(): void {
    const spinner = LiveLine.FRAMES[this.frame++ % LiveLine.FRAMES.length] ?? '';
    const text = this.current ? describeUpdate(this.current, true) : 'starting';
    const line = `${spinner} ${text}  ${seconds(Date.now() - this.started)}`;
    // A pseudo-terminal may report 0 columns: then assume a usual width.
    process.stderr.write(`\r\x1b[2K${line.slice(0, Math.max(40, (process.stderr.columns || 120) - 1))}`);
  }
}

function describeUpdate(u: ProgressUpdate, bar = false): string {
  if (u.kind === 'waiting') return u.reason;
  return [describeProgress(u.progress, bar), ...describeActivities(u.activities, u.progress.stage)].join('  · ');
}

/** `ingest 3/8 [██████░░░░░░]  rows=120000` */
export function describeProgress(p: PipelineProgress, bar = false): string {
  const parts = [p.stage];
  if (p.total > 0) {
    parts.push(`${p.done}/${p.total}`);
    if (bar) {
      const width = 12;
      const filled = Math.round((Math.min(p.done, p.total) / p.total) * width);
      parts.push(`[${'█'.repeat(filled)}${'░'.repeat(width - filled)}]`);
    }
  }
  const details = scalars(p.details);
  if (details) parts.push(` ${details}`);
  return parts.join(' ');
}

/**
 * Heartbeats of the running activities: `ingestPartition rows=12000 total=34013`, or
 * for parallel ones of a kind `3× ingestPartition rows=36000/818181` (summed).
 */
function describeActivities(activities: ActivityProgress[], stage: string): string[] {
  const byType = new Map<string, ActivityProgress[]>();
  for (const a of activities) byType.set(a.activity, [...(byType.get(a.activity) ?? []), a]);
  return [...byType].map(([activity, list]) => {
    const retry = Math.max(...list.map((a) => a.attempt)) > 1 ? ' (retrying)' : '';
    if (list.length === 1) {
      const { stage: own, ...rest } = asRecord(list[0]?.details);
      const details = scalars(own === stage ? rest : { stage: own, ...rest });
      return `${activity}${details ? ` ${details}` : ''}${retry}`;
    }
    const sum = (key: string) => list.reduce<number | undefined>((acc, a) => {
      const v = asRecord(a.details)[key];
      return acc === undefined || typeof v !== 'number' ? undefined : acc + v;
    }, 0);
    const [rows, total] = [sum('rows'), sum('total')];
    return `${list.length}× ${activity}${rows === undefined ? '' : ` rows=${rows}${total === undefined ? '' : `/${total}`}`}${retry}`;
  });
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/** The scalar fields of a details object as `k=v` pairs (long strings, such as ids printed already, left out). */
function scalars(value: unknown): string {
  return Object.entries(asRecord(value))
    .filter(([, v]) => typeof v === 'number' || typeof v === 'boolean' || (typeof v === 'string' && v.length <= 40))
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? Number(v.toPrecision(4)) : String(v)}`)
    .join(' ');
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
