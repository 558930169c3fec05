/** `trainingPipeline`: a feature view's window -> training dataset -> a registered, evaluated model version. */
import { parseWorkflowInput } from '../../core/errors.ts';
import { TrainingPipelineInputSchema } from '../../core/inputs.ts';
import type { TrainingPipelineInput } from '../../workflows/training-pipeline.ts';
import { compact, fingerprint, jsonObject, positiveInt, text, windowKey, type PipelineSpec } from '../pipeline-spec.ts';

export const trainSpec: PipelineSpec<'train'> = {
  name: 'train',
  workflowType: 'trainingPipeline',
  // The workflow runs on the CPU queue; it sends the training activity to the GPU pool itself.
  pool: 'cpu',
  description: 'features -> training dataset -> a registered, evaluated model version (training itself on the GPU pool)',
  idStem: (input) => `train:${input.model}`,
  runKey(input) {
    // Other parameters or promotion rules for the same data are another run (a sweep, say).
    const options = fingerprint({ params: input.params, promote: input.promote, validationStart: input.validationStart, testStart: input.testStart });
    const suffix = options ? `:options-${options}` : '';
    if (input.trainingDatasetId !== undefined) return `${trainSpec.idStem(input)}:dataset-${input.trainingDatasetId}${suffix}`;
    const window = windowKey(input);
    if (!window) return undefined;
    const view = `${input.featureView}:${input.version === undefined ? 'latest' : `v${input.version}`}`;
    return `${trainSpec.idStem(input)}:${view}:${window}${suffix}`;
  },
  validate(input) {
    const parsed = parseWorkflowInput('trainingPipeline', TrainingPipelineInputSchema, input);
    return parsed.ok ? undefined : parsed.problem;
  },
  withScheduleWindow: ({ start: _start, end: _end, trainingDatasetId: _dataset, ...input }, window) => ({ ...input, scheduleWindow: window }),
  // Daily, on the last 30 days. SKIP: a training run reads its whole span, so a later
  // run supersedes a skipped one and nothing is lost; queueing stale trainings behind a
  // slow one would only occupy the GPU pool. A missed day more than an hour late waits
  // for the next day. Backfills BUFFER_ALL: one at a time, versions in window order.
  schedule: { every: '1d', window: '30d', windowFollowsInterval: false, overlap: 'SKIP', backfillOverlap: 'BUFFER_ALL', catchupWindow: '1h' },
  flags: [
    { flags: '--feature-view <name>', description: 'feature view to train on', required: true },
    { flags: '--view-version <n>', description: 'feature view version (default: the latest defined)' },
    { flags: '--model <name>', description: 'model to register a new version of', required: true },
    { flags: '--params <json>', description: 'model and training parameters, e.g. \'{"epochs": 3, "hiddenUnits": [32]}\'' },
    { flags: '--promote [alias]', description: 'move this alias (default champion) to the new version if it beats the holder' },
    { flags: '--promote-metric <metric>', description: 'metric the promotion compares (default auc)' },
    { flags: '--start <iso>', description: 'spine window start of a new training dataset', runOnly: true },
    { flags: '--end <iso>', description: 'spine window end (exclusive)', runOnly: true },
    { flags: '--validation-start <iso>', description: 'rows from here on are the validation split', runOnly: true },
    { flags: '--test-start <iso>', description: 'rows from here on are the test split', runOnly: true },
    { flags: '--dataset <id>', description: 'train on this existing training dataset instead of creating one', runOnly: true },
  ],
  fromFlags(values): TrainingPipelineInput {
    const promote = values.promote === undefined || values.promote === false ? undefined : compact({ alias: text(values.promote), metric: text(values.promoteMetric) });
    return compact({
      featureView: text(values.featureView) ?? '',
      version: positiveInt(values.viewVersion, '--view-version'),
      model: text(values.model) ?? '',
      params: jsonObject(values.params, '--params'),
      promote: promote as TrainingPipelineInput['promote'],
      start: text(values.start),
      end: text(values.end),
      validationStart: text(values.validationStart),
      testStart: text(values.testStart),
      trainingDatasetId: positiveInt(values.dataset, '--dataset'),
    });
  },
  summarize(r) {
    const metrics = Object.entries(r.metrics)
      .map(([k, v]) => `${k}=${Number(v.toPrecision(4))}`)
      .join(' ');
    const promotion = r.promotion ? `; ${r.promotion.promoted ? `promoted to ${r.promotion.alias}` : `not promoted (${r.promotion.reason})`}` : '';
    return `${r.model} v${r.version} from ${r.featureView.name} v${r.featureView.version} (dataset ${r.trainingDatasetId}): ${metrics}${promotion}`;
  },
};
