import { defineQuery, defineSignal } from '@temporalio/workflow';

/** Live progress of a pipeline workflow, for the CLI and the Temporal UI's query tab. */
export interface PipelineProgress {
  stage: string;
  done: number;
  total: number;
  /** Free-form figures of the current stage (rows so far, epoch and loss…). */
  details?: Record<string, unknown>;
}

export const progressQuery = defineQuery<PipelineProgress>('progress');

/** One training epoch, as the train activity reports it to its workflow. */
export interface TrainingEpoch {
  epoch: number;
  epochs: number;
  loss: number;
  valLoss?: number;
  samplesPerSecond: number;
  /** What `epoch` counts: MLP epochs, or boosting rounds of gradient-boosted trees (absent: epochs). */
  unit?: 'epoch' | 'round';
}

/** Sent by the train activity after each epoch, so the progress query is live. */
export const trainingEpochSignal = defineSignal<[TrainingEpoch]>('trainingEpoch');

/**
 * Sent to a pipeline of a chain that waits for what it reads to be committed (the feature
 * groups before it in ftiPipeline): by the commit's activity as soon as the commit is
 * made, and again by the committing run's workflow (workflows/upstream.ts).
 */
export const upstreamCommittedSignal = defineSignal('upstreamCommitted');
