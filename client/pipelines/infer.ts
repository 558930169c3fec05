/** `batchInference`: one pinned model version scores a window of spine rows into a prediction run. */
import { parseWorkflowInput } from '../../core/errors.ts';
import { BatchInferenceInputSchema, DEFAULT_ALIAS } from '../../core/inference-inputs.ts';
import type { BatchInferenceInput } from '../../workflows/batch-inference.ts';
import { compact, positiveInt, text, windowKey, type PipelineSpec } from '../pipeline-spec.ts';

export const inferSpec: PipelineSpec<'infer'> = {
  name: 'infer',
  workflowType: 'batchInference',
  pool: 'cpu',
  description: 'a model version (by alias or number) scores a window of rows into a prediction run',
  idStem: (input) => `infer:${input.model}@${input.version === undefined ? (input.alias ?? DEFAULT_ALIAS) : `v${input.version}`}`,
  runKey(input) {
    if (input.runId !== undefined) return `${inferSpec.idStem(input)}:run-${input.runId}`;
    const window = windowKey(input);
    return window ? `${inferSpec.idStem(input)}:${window}` : undefined;
  },
  validate(input) {
    const parsed = parseWorkflowInput('batchInference', BatchInferenceInputSchema, input);
    return parsed.ok ? undefined : parsed.problem;
  },
  // A scheduled run's prediction run id defaults to its workflow id, which the schedule makes unique per fire time.
  withScheduleWindow: ({ start: _start, end: _end, runId: _runId, ...input }, window) => ({ ...input, scheduleWindow: window }),
  // Like features: hourly windows that tile time, every window's predictions wanted,
  // in order (BUFFER_ALL); backfills in parallel (disjoint windows, idempotent runs).
  schedule: { every: '1h', window: '1h', windowFollowsInterval: true, overlap: 'BUFFER_ALL', backfillOverlap: 'ALLOW_ALL', catchupWindow: '1d' },
  flags: [
    { flags: '--model <name>', description: 'model to score with', required: true },
    { flags: '--alias <alias>', description: `model alias to resolve (default ${DEFAULT_ALIAS}); pinned when the run starts` },
    { flags: '--model-version <n>', description: 'score with this version instead of an alias' },
    { flags: '--start <iso>', description: 'score spine rows with event time from here (inclusive)', runOnly: true },
    { flags: '--end <iso>', description: 'to here (exclusive)', runOnly: true },
    { flags: '--run-id <id>', description: 'prediction run id (default: the workflow id)', runOnly: true },
    { flags: '--partitions <n>', description: 'parallel time slices of the window (default: one per day)' },
  ],
  fromFlags: (values): BatchInferenceInput =>
    compact({
      model: text(values.model) ?? '',
      alias: text(values.alias),
      version: positiveInt(values.modelVersion, '--model-version'),
      start: text(values.start),
      end: text(values.end),
      runId: text(values.runId),
      partitions: positiveInt(values.partitions, '--partitions'),
    }),
  summarize: (r) => `${r.model} v${r.version} on ${r.featureView.name} v${r.featureView.version}: ${r.rows} predictions, ${r.rowsRejected} rejected (prediction run ${r.runId})`,
};
