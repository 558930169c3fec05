/**
 * What one pipeline entry of the table (pipelines.ts) says: the workflow type, the
 * pool whose task queue runs it, how a run's workflow id is derived from its business
 * inputs, its schedule defaults, and how `fti run` / `fti schedule create` flags
 * become its input. Plus the small helpers the entries share.
 *
 * Workflows are referenced by their type name (a string), never imported: a client
 * process must not load workflow code. Inputs and outputs are imported as types.
 */
import crypto from 'node:crypto';
import type { ScheduleOverlapPolicy } from '@temporalio/client';
import type { Pool } from '../core/task-queues.ts';
import type { Duration } from '../core/duration.ts';
import type { BatchInferenceInput, BatchInferenceResult } from '../workflows/batch-inference.ts';
import type { FeaturePipelineInput, FeaturePipelineResult } from '../workflows/feature-pipeline.ts';
import type { FtiPipelineInput, FtiPipelineResult } from '../workflows/fti-pipeline.ts';
import type { TrainingPipelineInput, TrainingPipelineResult } from '../workflows/training-pipeline.ts';

/** Input and output of each pipeline workflow, keyed by the name users type (`fti run feature`). */
export interface PipelineIO {
  feature: { input: FeaturePipelineInput; output: FeaturePipelineResult };
  train: { input: TrainingPipelineInput; output: TrainingPipelineResult };
  infer: { input: BatchInferenceInput; output: BatchInferenceResult };
  all: { input: FtiPipelineInput; output: FtiPipelineResult };
}

export type PipelineName = keyof PipelineIO;
export type PipelineInput<P extends PipelineName> = PipelineIO[P]['input'];
export type PipelineOutput<P extends PipelineName> = PipelineIO[P]['output'];

/** A concrete overlap policy (the SDK's type also admits `undefined`, "unspecified"). */
export type OverlapPolicy = NonNullable<ScheduleOverlapPolicy>;

/** What a Temporal Schedule of this pipeline does unless told otherwise. */
export interface ScheduleDefaults {
  /** Interval between fires (aligned to the Unix epoch: `1h` fires on the hour, UTC). */
  every: Duration;
  /** Data window of each run: [fire time - window, fire time). */
  window: Duration;
  /**
   * True when consecutive windows tile time (features, predictions): a custom
   * `--every` then sets the window too. False for a sliding span (training on the
   * last 30 days, daily).
   */
  windowFollowsInterval: boolean;
  /** What happens when a fire comes while the previous run still runs (see README, "Schedules"). */
  overlap: OverlapPolicy;
  /** Overlap policy for backfills. */
  backfillOverlap: OverlapPolicy;
  /** How late a missed fire (server or workers down) may still be taken; older ones need a backfill. */
  catchupWindow: Duration;
}

/** One command-line flag of a pipeline: commander syntax, help, and whether it applies to schedules. */
export interface PipelineFlag {
  /** commander flags, e.g. `--group <name>`; its camelCase name is the key in `fromFlags` values. */
  flags: string;
  description: string;
  required?: boolean;
  /** Only for one-off runs (an explicit window, a fixed dataset); a schedule derives the window from its fire time. */
  runOnly?: boolean;
}

/** Parsed flag values, keyed by commander's camelCase option names. */
export type FlagValues = Record<string, string | boolean | undefined>;

export interface PipelineSpec<P extends PipelineName> {
  name: P;
  /** The Temporal workflow type, as typed into the UI's "Start Workflow" form. */
  workflowType: string;
  /** The pool whose task queue (`<prefix>fti-<pool>`) runs the workflow. */
  pool: Pool;
  /** Short description for `--help`. */
  description: string;
  /**
   * The business key of a run: runs with the same key get the same workflow id, so a
   * double trigger attaches to the first run instead of starting a second.
   * Undefined when the input names no window (every run is then a new one).
   */
  runKey(input: PipelineInput<P>): string | undefined;
  /** Prefix of unkeyed workflow ids and of default schedule ids, e.g. `features:flights:v1`. */
  idStem(input: PipelineInput<P>): string;
  /** A clear message when the input is malformed (checked before anything is started). */
  validate(input: PipelineInput<P>): string | undefined;
  /** The input of a scheduled run: the input without an explicit window, plus `scheduleWindow`. */
  withScheduleWindow(input: PipelineInput<P>, window: Duration): PipelineInput<P>;
  schedule: ScheduleDefaults;
  flags: PipelineFlag[];
  fromFlags(values: FlagValues): PipelineInput<P>;
  /** One line for humans: what the run produced. */
  summarize(output: PipelineOutput<P>): string;
}

/** `2001-01-03T00:00:00Z` and `2001-01-03T00:00:00.000Z` are the same window: normalise before keying. */
export function isoKey(value: string): string {
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? value : new Date(ms).toISOString();
}

/** `:<start>..<end>` for an input with both ends of a window, else undefined. */
export function windowKey(input: { start?: string; end?: string }): string | undefined {
  return input.start && input.end ? `${isoKey(input.start)}..${isoKey(input.end)}` : undefined;
}

/** A short, stable digest of the JSON of the defined values; '' when none is defined. */
export function fingerprint(values: Record<string, unknown>): string {
  const defined = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined));
  if (Object.keys(defined).length === 0) return '';
  return crypto.createHash('sha256').update(JSON.stringify(defined)).digest('hex').slice(0, 10);
}

export function text(value: string | boolean | undefined): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

export function positiveInt(value: string | boolean | undefined, flag: string): number | undefined {
  const t = text(value);
  if (t === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(t)) throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(t)}`);
  return Number(t);
}

export function jsonObject(value: string | boolean | undefined, flag: string): Record<string, unknown> | undefined {
  const t = text(value);
  if (t === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(t);
  } catch (err) {
    throw new Error(`${flag} must be a JSON object: ${(err as Error).message}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${flag} must be a JSON object, e.g. '{"epochs": 3}'`);
  return parsed as Record<string, unknown>;
}

/** Drops undefined values, so inputs stay minimal (and the UI shows what was asked). */
export function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
