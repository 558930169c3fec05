/** The programmatic client: `import { FtiClient } from 'fti-temporal/client'` (or `./client/index.ts`). */
export { FtiClient, PipelineInputError, type ConnectOptions, type StartOptions } from './fti-client.ts';
export { PipelineRun, type ActivityProgress, type PipelineProgress, type RunInfo, type ProgressUpdate, type RunStatus, type WaitOptions } from './pipeline-run.ts';
export { PIPELINES, PIPELINE_NAMES, type OverlapPolicy, type PipelineInput, type PipelineName, type PipelineOutput } from './pipelines.ts';
export { FtiSchedules, type BackfillResult, type CreateScheduleOptions, type ScheduleSummaryView, type ScheduleView, type ScheduledRun } from './schedules.ts';
export { describeRunFailure, formatRunFailure, type RunFailure } from './failures.ts';
