import { CancellationScope, log, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { BatchInferencePlan, BatchInferenceResult, createInferenceActivities, PartitionSeconds } from '../activities/inference.ts';
import { BatchInferenceInputSchema, type BatchInferenceInput } from '../core/inference-inputs.ts';
import { progressQuery, type PipelineProgress } from '../core/progress.ts';
import { DEFAULT_PARALLELISM, fanOut } from './fan-out.ts';
import { runWindow } from './schedule-window.ts';
import { failureMessage } from './failure-message.ts';
import { parseInput } from './validate.ts';
import { ACTIVITY_RETRY, LONG_ACTIVITY } from './retry.ts';
import { shortSteps } from './local-steps.ts';

type InferenceActivities = ReturnType<typeof createInferenceActivities>;

// Planning counts the window's spine rows: one scan, seconds on big spines.
const shortOptions = { startToCloseTimeout: '5m', retry: ACTIVITY_RETRY } as const;
// The abort: always an activity (the plan and the finish are short steps, local-steps.ts).
const abortStep = proxyActivities<InferenceActivities>(shortOptions);

// A partition reads, scores and COPYs its rows; it heartbeats per batch.
const long = proxyActivities<InferenceActivities>(LONG_ACTIVITY);

export type { BatchInferenceInput, BatchInferenceResult };

/**
 * The batch inference pipeline: spine rows in [start, end) -> point-in-time features
 * -> scores from one pinned model version -> a prediction run in Postgres.
 * Input: { model, alias? | version?, start, end, runId?, partitions?, scheduleWindow? }.
 * Runs on fti-cpu. The alias (default `champion`) is resolved once, by the plan; a
 * promotion during the run does not change the version it scores with.
 */
export async function batchInference(input: BatchInferenceInput): Promise<BatchInferenceResult> {
  const args = parseInput('batchInference', BatchInferenceInputSchema, input);
  const progress: PipelineProgress = { stage: 'plan', done: 0, total: 1 };
  setHandler(progressQuery, () => progress);

  const short = shortSteps<InferenceActivities>(shortOptions);
  const window = runWindow(args);
  const runId = args.runId ?? workflowInfo().workflowId;
  const plan: BatchInferencePlan = await short.planBatchInference({
    runId,
    model: args.model,
    alias: args.alias,
    version: args.version,
    // The schema guarantees start and end, or a scheduleWindow that runWindow turned into them.
    start: window.start as string,
    end: window.end as string,
    partitions: args.partitions,
  });
  if (plan.kind === 'done') {
    log.info('prediction run already completed; nothing to add', { ...plan.result });
    Object.assign(progress, { stage: 'done', done: 1, total: 1, details: { ...plan.result } });
    return plan.result;
  }

  const details = { runId, model: plan.model, version: plan.version, strategy: plan.strategy, rows: 0, rowsRejected: 0 };
  Object.assign(progress, { stage: 'predict', done: 0, total: plan.partitions.length, details });
  let stageSeconds: PartitionSeconds | undefined;
  try {
    await fanOut(plan.partitions, args.parallelism ?? DEFAULT_PARALLELISM, async (partition) => {
      const result = await long.predictPartition({ runId, partition: partition.index });
      details.rows += result.rows;
      details.rowsRejected += result.rowsRejected;
      if (result.seconds) {
        const sum = (stageSeconds ??= { read: 0, score: 0, write: 0 });
        sum.read += result.seconds.read;
        sum.score += result.seconds.score;
        sum.write += result.seconds.write;
      }
      progress.done++;
    });
    Object.assign(progress, { stage: 'finish', done: 0, total: 1 });
    const result = { ...(await short.finishBatchInference({ runId })), ...(stageSeconds ? { stageSeconds } : {}) };
    Object.assign(progress, { stage: 'done', done: 1, total: 1, details: { ...result } });
    log.info('prediction run completed', { ...result });
    return result;
  } catch (err) {
    await CancellationScope.nonCancellable(() => abortStep.abortBatchInference({ runId, error: failureMessage(err) }));
    throw err;
  }
}

