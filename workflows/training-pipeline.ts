import { ActivityCancellationType, CancellationScope, log, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { createModelReportActivities, ModelReportRef } from '../activities/model-report.ts';
import type { createGpuTrainingActivities, createTrainingActivities, DatasetRef, EvaluationMetrics, PromotionDecision, TrainResult } from '../activities/training.ts';
import { TrainingPipelineInputSchema, type TrainingPipelineInput } from '../core/inputs.ts';
import { progressQuery, trainingEpochSignal, type PipelineProgress, type TrainingEpoch } from '../core/progress.ts';
import { noWorkerFailure } from './failure-message.ts';
import { runWindow } from './schedule-window.ts';
import { poolQueues } from './queues.ts';
import { parseInput } from './validate.ts';
import { ACTIVITY_RETRY, LONG_ACTIVITY } from './retry.ts';
import { shortSteps } from './local-steps.ts';
import { announceToParent } from './model-registered.ts';
import { awaitUpstream } from './upstream.ts';

type CpuActivities = ReturnType<typeof createTrainingActivities>;
type GpuActivities = ReturnType<typeof createGpuTrainingActivities>;
type ReportActivities = ReturnType<typeof createModelReportActivities>;

export interface TrainingPipelineResult {
  model: string;
  version: number;
  featureView: { name: string; version: number };
  trainingDatasetId: number;
  rowCounts: DatasetRef['rowCounts'];
  /** The feature group commits the dataset read. */
  commits: DatasetRef['commits'];
  metrics: EvaluationMetrics;
  training: Omit<TrainResult, 'runKey'>;
  /** Present when a promotion policy was given: the decision and both numbers. */
  promotion?: PromotionDecision;
  /** The version's report, stored with it: `fti serve` answers it at `route`, `command` writes it to a file (absent in runs recorded before reports). */
  report?: ModelReportRef;
}

export type { TrainingPipelineInput };

/**
 * Features -> a registered, evaluated model version.
 * dataset (fti-cpu) -> train (fti-gpu) -> evaluate (fti-cpu) -> register -> promote?
 * Input: { featureView, version?, trainingDatasetId?, model, params?, promote?, start?, end?, ... }.
 */
/** How long a training attempt waits for a GPU worker by default. */
const DEFAULT_GPU_WAIT = '10m';

/** The run's last epoch (or boosting round) as the progress query's details show one (TrainingEpoch), from the train activity's result. */
function lastEpoch(trained: TrainResult): Omit<TrainingEpoch, 'unit' | 'epochs'> {
  return {
    epoch: trained.epochs,
    loss: trained.finalLoss,
    ...(trained.finalValLoss !== undefined ? { valLoss: trained.finalValLoss } : {}),
    samplesPerSecond: trained.epochSamplesPerSecond?.at(-1) ?? trained.samplesPerSecond,
  };
}

export async function trainingPipeline(input: TrainingPipelineInput): Promise<TrainingPipelineResult> {
  const args = parseInput('trainingPipeline', TrainingPipelineInputSchema, input);
  const queues = poolQueues();
  const progress: PipelineProgress = { stage: 'dataset', done: 0, total: 5 };
  setHandler(progressQuery, () => progress);
  setHandler(trainingEpochSignal, (epoch) => {
    progress.details = { ...epoch };
  });

  const cpu = proxyActivities<CpuActivities>({ taskQueue: queues.cpu, startToCloseTimeout: '5m', retry: ACTIVITY_RETRY });
  // Describe, register, and the clean-up after a success: local activities on this (CPU) worker, or activities on the CPU queue in runs recorded before (local-steps.ts).
  const short = shortSteps<CpuActivities>({ taskQueue: queues.cpu, startToCloseTimeout: '5m', retry: ACTIVITY_RETRY });
  const cpuLong = proxyActivities<CpuActivities>({ taskQueue: queues.cpu, ...LONG_ACTIVITY });
  const reports = proxyActivities<ReportActivities>({ taskQueue: queues.cpu, startToCloseTimeout: '30m', heartbeatTimeout: '30s', retry: ACTIVITY_RETRY });
  // Heartbeats come every batch, so a dead GPU worker is noticed within the heartbeat
  // timeout and the retry (on any GPU worker) resumes from the last checkpoint.
  // No GPU worker polling: fail with that reason after gpuWaitTimeout rather than wait
  // silently (schedule-to-start applies to each attempt: also after a GPU worker died).
  const gpuWait = args.gpuWaitTimeout ?? DEFAULT_GPU_WAIT;
  const gpu = proxyActivities<GpuActivities>({
    taskQueue: queues.gpu,
    startToCloseTimeout: '6h',
    scheduleToStartTimeout: gpuWait,
    // The SDK sends heartbeats at most every 80% of this, and a cancel arrives with one.
    heartbeatTimeout: '10s',
    retry: { maximumAttempts: 10, initialInterval: '1s' },
    // Wait for the trainer to actually stop before the workflow reports the cancel.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });

  const window = runWindow(args);
  if (args.awaitUpstream) {
    // ftiPipeline: the chain's feature groups commit first (the last one's run signals).
    progress.stage = 'waiting';
    await awaitUpstream();
    progress.stage = 'dataset';
  }
  const runKey = `${workflowInfo().workflowId}/${workflowInfo().runId}`;
  let succeeded = false;
  const dataset = args.trainingDatasetId
    ? await short.describeTrainingDataset({ trainingDatasetId: args.trainingDatasetId })
    : await cpuLong.createTrainingDataset({
        featureView: args.featureView,
        version: args.version,
        params: args.params,
        ...window,
        validationStart: args.validationStart,
        testStart: args.testStart,
        ...(args.datasetChunks ? { chunks: args.datasetChunks } : {}),
      });
  log.info('training dataset ready', { trainingDatasetId: dataset.trainingDatasetId, rows: dataset.rowCounts });

  try {
    Object.assign(progress, { stage: 'train', done: 1 });
    const trained = await gpu.trainModel({ runKey, model: args.model, trainingDatasetId: dataset.trainingDatasetId, params: args.params }).catch((err: unknown) => {
      throw noWorkerFailure(err, queues.gpu, gpuWait, 'start one with `npx fti worker gpu`, or raise gpuWaitTimeout');
    });
    // The last epoch as the progress query shows it: the train activity signals every epoch but that one.
    Object.assign(progress, { stage: 'evaluate', done: 2, details: { epochs: trained.epochs, ...progress.details, ...lastEpoch(trained) } });
    const metrics = await cpuLong.evaluateModel({ runKey, trainingDatasetId: dataset.trainingDatasetId });
    Object.assign(progress, { stage: 'register', done: 3, details: { ...progress.details, metrics } });
    const registered = await short.registerModel({ runKey, model: args.model, trainingDatasetId: dataset.trainingDatasetId, params: args.params, metrics, training: trained });
    // The version is usable from here: a parent that asked for it (ftiPipeline) hears of it now, not after the report.
    const announced = args.announceVersion ? announceToParent({ model: args.model, version: registered.version }) : undefined;
    // The report reads the loss history from the run's checkpoint, so it comes before the cleanup below.
    // (patched: histories recorded before reports replay without this step.)
    let report: ModelReportRef | undefined;
    if (patched('model-report')) {
      Object.assign(progress, { stage: 'report', details: { ...progress.details, version: registered.version } });
      report = await reports.writeModelReport({ runKey, model: args.model, version: registered.version });
    }
    await announced;
    let promotion: PromotionDecision | undefined;
    if (args.promote) {
      Object.assign(progress, { stage: 'promote', done: 4 });
      promotion = await cpu.promoteModel({ model: args.model, version: registered.version, policy: args.promote });
    }
    const { runKey: _runKey, ...training } = trained;
    const result: TrainingPipelineResult = {
      model: args.model,
      version: registered.version,
      featureView: dataset.featureView,
      trainingDatasetId: dataset.trainingDatasetId,
      rowCounts: dataset.rowCounts,
      commits: dataset.commits,
      metrics,
      training,
      ...(promotion ? { promotion } : {}),
      ...(report ? { report } : {}),
    };
    Object.assign(progress, { stage: 'done', done: 5, details: { ...progress.details, version: registered.version } });
    log.info('registered', { model: args.model, version: registered.version, metrics, promoted: promotion?.promoted });
    succeeded = true;
    return result;
  } finally {
    // The checkpoint held the model until registration; drop it (also after a failure or a cancel).
    // After a failure or a cancel it is an activity, as every abort step is (local-steps.ts).
    await CancellationScope.nonCancellable(() => (succeeded ? short : cpu).cleanupTraining({ runKey }));
  }
}
