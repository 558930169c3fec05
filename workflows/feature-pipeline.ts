import { CancellationScope, log, patched, proxyActivities, setHandler, ActivityFailure, ApplicationFailure } from '@temporalio/workflow';
import type { createFeatureActivities, FeaturePipelineResult, FeatureRunPlan } from '../activities/feature.ts';
import type { z } from 'zod';
import { FailureType } from '../core/errors.ts';
import { FeaturePipelineInputSchema, type FeaturePipelineInput } from '../core/inputs.ts';
import { progressQuery, type PipelineProgress } from '../core/progress.ts';
import { DEFAULT_PARALLELISM, fanOut } from './fan-out.ts';
import { runWindow } from './schedule-window.ts';
import { failureMessage } from './failure-message.ts';
import { parseInput } from './validate.ts';
import { ACTIVITY_RETRY, LONG_ACTIVITY } from './retry.ts';
import { shortSteps } from './local-steps.ts';
import { awaitUpstream, checkDownstream, tellDownstream } from './upstream.ts';

type FeatureActivities = ReturnType<typeof createFeatureActivities>;
type ParsedFeatureInput = z.output<typeof FeaturePipelineInputSchema>;

const shortOptions = { startToCloseTimeout: '2m', retry: ACTIVITY_RETRY } as const;
// The abort: always an activity (the plan is a short step, local-steps.ts).
const abortStep = proxyActivities<FeatureActivities>(shortOptions);

// Partitions and the commit can take minutes on big inputs; they heartbeat.
const long = proxyActivities<FeatureActivities>(LONG_ACTIVITY);

export type { FeaturePipelineInput, FeaturePipelineResult };

/**
 * Raw data -> a validated, versioned commit of a feature group.
 * Input: { featureGroup, version?, source?, start?, end?, scheduleWindow? } (ftiPipeline adds
 * awaitUpstream and downstream: workflows/upstream.ts). Runs on fti-cpu.
 */
export async function featurePipeline(input: FeaturePipelineInput): Promise<FeaturePipelineResult> {
  const args = parseInput('featurePipeline', FeaturePipelineInputSchema, input);
  const progress: PipelineProgress = { stage: args.awaitUpstream ? 'waiting' : 'plan', done: 0, total: 1 };
  setHandler(progressQuery, () => progress);
  if (args.downstream) checkDownstream(args.downstream);
  if (args.awaitUpstream) {
    // ftiPipeline: the groups before this one commit first (their runs signal).
    await awaitUpstream();
    progress.stage = 'plan';
  }
  const result = await commitRun(args, progress);
  if (args.downstream) await tellDownstream(args.downstream);
  return result;
}

/** Plan, partitions, commit: the run's commit (or the one an earlier attempt made). */
async function commitRun(args: ParsedFeatureInput, progress: PipelineProgress): Promise<FeaturePipelineResult> {
  const window = runWindow(args);
  const plan: FeatureRunPlan = await shortSteps<FeatureActivities>(shortOptions).planFeatureRun({ featureGroup: args.featureGroup, version: args.version, source: args.source, partitionRows: args.partitionRows, ...window });
  if (plan.kind === 'done') {
    log.info('commit already made by an earlier attempt', { commitId: plan.commitId });
    return plan.result;
  }
  const ref = { featureGroup: plan.featureGroup, version: plan.version, commitId: plan.commitId };
  const parallelism = args.parallelism ?? DEFAULT_PARALLELISM;
  try {
    if (plan.kind === 'source') {
      Object.assign(progress, { stage: 'ingest', done: 0, total: plan.partitions.length });
      await fanOut(plan.partitions, parallelism, async (partition) => {
        await long.ingestPartition({ ...ref, partition, source: args.source, ...window });
        progress.done++;
      });
    } else {
      Object.assign(progress, { stage: 'aggregate', done: 0, total: plan.partitions });
      const partitions = Array.from({ length: plan.partitions }, (_, partition) => partition);
      await fanOut(partitions, parallelism, async (partition) => {
        await long.aggregatePartition({ ...ref, partition, partitions: plan.partitions, sourceCommitId: plan.sourceCommitId, ...window });
        progress.done++;
      });
    }
    Object.assign(progress, { stage: 'commit', done: 0, total: 1 });
    // The commit's activity tells the next run of the chain itself, as soon as the commit is
    // made (patched: earlier histories scheduled the commit without it).
    const tell = args.downstream && patched('commit-tells-downstream') ? { tell: args.downstream } : {};
    const result = await long.commitFeatures({ ...ref, ...tell });
    Object.assign(progress, { stage: 'done', done: 1, total: 1, details: { ...result } });
    log.info('committed', { ...result });
    return result;
  } catch (err) {
    // A strict validation failure has already been recorded with its report.
    if (!isValidationFailure(err)) {
      await CancellationScope.nonCancellable(() => abortStep.abortFeatureRun({ ...ref, error: failureMessage(err) }));
    }
    throw err;
  }
}

function isValidationFailure(err: unknown): boolean {
  return err instanceof ActivityFailure && err.cause instanceof ApplicationFailure && err.cause.type === FailureType.ValidationFailed;
}

