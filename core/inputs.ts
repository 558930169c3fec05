/**
 * Workflow inputs: one JSON object each, validated on entry with zod (pure, so the
 * workflow sandbox can load it). A bad input fails the workflow at once with a
 * non-retryable FtiInvalidInput error that says what is wrong.
 */
import { z } from 'zod';
import { isDuration, type Duration } from './duration.ts';
import { IDENTIFIER } from './names.ts';

export const identifier = z.string().regex(IDENTIFIER, `must match ${IDENTIFIER.source} (lower-case letters, digits and _, starting with a letter)`);

/** An ISO-8601 timestamp string (the UI and schedules pass text); parsed to a Date by activities. */
export const isoTime = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 timestamp such as 2001-06-01T00:00:00Z');

/** A window length: 30m, 2h, 7d. */
export const duration = z.string().refine(isDuration, 'must be a duration such as 30m, 1h or 7d') as unknown as z.ZodType<Duration>;

export const SourceSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('parquet'), path: z.string().min(1), timeColumn: z.string().optional() }),
  z.object({ kind: z.literal('csv'), path: z.string().min(1), delimiter: z.string().length(1).optional() }),
  z.object({ kind: z.literal('ndjson'), path: z.string().min(1) }),
  z.object({ kind: z.literal('postgres'), query: z.string().min(1) }),
  z.object({ kind: z.literal('feature_group'), name: identifier, version: z.number().int().positive() }),
]);
export type SourceSpec = z.infer<typeof SourceSpecSchema>;

export const FeaturePipelineInputSchema = z
  .object({
    featureGroup: identifier,
    version: z.number().int().positive().optional(),
    /** Read this source instead of the definition's (same kind of rows). */
    source: SourceSpecSchema.optional(),
    /** Event-time window [start, end): only rows in it are ingested. */
    start: isoTime.optional(),
    end: isoTime.optional(),
    /** For scheduled runs: the window is [fire time - scheduleWindow, fire time). */
    scheduleWindow: duration.optional(),
  })
  .strict()
  .refine((i) => !i.start || !i.end || Date.parse(i.start) < Date.parse(i.end), { message: 'start must be before end', path: ['end'] });
export type FeaturePipelineInput = z.input<typeof FeaturePipelineInputSchema>;

/** When to move an alias to the new model version: only if it beats the current holder. */
export const PromotionPolicySchema = z
  .object({
    alias: identifier.default('champion'),
    /** A metric the evaluation stores: auc, accuracy, precision, recall (higher is better) or logLoss, rmse, mae (lower is better). */
    metric: z.enum(['auc', 'accuracy', 'precision', 'recall', 'logLoss', 'rmse', 'mae']).default('auc'),
    /** The new version must beat the holder by more than this. */
    minDelta: z.number().min(0).default(0),
  })
  .strict();
export type PromotionPolicy = z.output<typeof PromotionPolicySchema>;

export const TrainingPipelineInputSchema = z
  .object({
    featureView: identifier,
    version: z.number().int().positive().optional(),
    /** Train on an existing training dataset instead of creating one. */
    trainingDatasetId: z.number().int().positive().optional(),
    /** The registered model's name (a new version of it is made). */
    model: identifier,
    /** Model and training parameters (hiddenUnits, learningRate, epochs, batchSize, ...); checked by the first activity. */
    params: z.record(z.string(), z.unknown()).optional(),
    promote: PromotionPolicySchema.optional(),
    /** Spine window of a new dataset [start, end), and its split boundaries. */
    start: isoTime.optional(),
    end: isoTime.optional(),
    validationStart: isoTime.optional(),
    testStart: isoTime.optional(),
    /** For scheduled runs: train on [fire time - scheduleWindow, fire time). */
    scheduleWindow: duration.optional(),
  })
  .strict();
export type TrainingPipelineInput = z.input<typeof TrainingPipelineInputSchema>;

/** The whole FTI chain in one run: features, then training, then batch inference. */
export const FtiPipelineInputSchema = z
  .object({
    features: z
      .object({
        /** Feature groups to compute, in order (a derived group after the group it aggregates). */
        groups: z.array(identifier).min(1),
        start: isoTime.optional(),
        end: isoTime.optional(),
      })
      .strict(),
    training: TrainingPipelineInputSchema.omit({ scheduleWindow: true }),
    inference: z
      .object({
        start: isoTime,
        end: isoTime,
        /** Score with this alias; default: the version this run trained. */
        alias: identifier.optional(),
      })
      .strict(),
  })
  .strict();
export type FtiPipelineInput = z.input<typeof FtiPipelineInputSchema>;
