import { defineQuery } from '@temporalio/workflow';

/** Live progress of a pipeline workflow, for the CLI and the Temporal UI's query tab. */
export interface PipelineProgress {
  stage: string;
  done: number;
  total: number;
  /** Free-form figures of the current stage (rows so far, epoch and loss…). */
  details?: Record<string, unknown>;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');
