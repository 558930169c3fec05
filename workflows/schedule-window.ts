/**
 * Scheduled runs: a Temporal Schedule starts a pipeline with the same input every
 * time, and tags each run with its scheduled fire time (the TemporalScheduledStartTime
 * search attribute). With `scheduleWindow: '1h'` in the input, a pipeline turns that
 * fire time into its data window: [fire time - 1h, fire time). A backfill over a date
 * range fires once per slot, so it recomputes exactly those windows.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { ApplicationFailure, workflowInfo } from '@temporalio/workflow';
import { FailureType } from '../core/errors.ts';
import { durationMs, type Duration } from '../core/duration.ts';

export const SCHEDULED_START_TIME = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

export interface Window {
  start?: string;
  end?: string;
}

/** The window of this run: explicit start/end win; else the schedule's slot; else none. */
export function runWindow(input: { start?: string; end?: string; scheduleWindow?: Duration }): Window {
  if (input.start || input.end || !input.scheduleWindow) return { start: input.start, end: input.end };
  const fired = workflowInfo().typedSearchAttributes.get(SCHEDULED_START_TIME);
  if (!fired) {
    throw ApplicationFailure.nonRetryable(
      `scheduleWindow is set but this run was not started by a Temporal Schedule; pass start and end instead`,
      FailureType.InvalidInput,
    );
  }
  const end = new Date(fired);
  return { start: new Date(end.getTime() - durationMs(input.scheduleWindow)).toISOString(), end: end.toISOString() };
}
