/**
 * Workflow inputs: one JSON object each, validated on entry with zod (pure, so the
 * workflow sandbox can load it). A bad input fails the workflow at once with a
 * non-retryable FtiInvalidInput error that says what is wrong.
 */
import { z } from 'zod';
import { isDuration, type Duration } from './duration.ts';
import { IDENTIFIER } from './names.ts';

export const identifier = z.string().regex(IDENTIFIER, `must match ${IDENTIFIER.source} (lower-case letters, digits and _, starting with a letter)`);

/**
 * An ISO-8601 timestamp string (the UI and schedules pass text); parsed to a Date by activities.
 * A time of day needs its zone (`Z` or an offset): JavaScript would read a zone-less one in the
 * worker's local zone. Anything else (`Date.parse` also takes text such as `x 2001`) is refused.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/;
export const isoTime = z
  .string()
  .refine((s) => ISO_TIME.test(s) && !Number.isNaN(Date.parse(s)), 'must be an ISO-8601 timestamp with a zone, such as 2001-06-01T00:00:00Z (or a date, 2001-06-01)');

/** A window length: 30m, 2h, 7d. */
export const duration = z.string().refine(isDuration, 'must be a duration such as 30s, 30m, 1h or 7d') as unknown as z.ZodType<Duration>;

/** Partition activities one run keeps in flight at once; the rest wait their turn (default 8). */
export const parallelism = z.number().int().min(1).max(64);

const sourcePath = z
  .string()
  .min(1)
  .max(4096)
  .refine((p) => !p.includes('\0'), 'must not contain a NUL character');
const csvDelimiter = z
  .string()
  .length(1)
  .refine((d) => d !== '"' && d !== '\n' && d !== '\r', 'must be one character other than a quote or a line break');

/** The sources that are files: the only kinds a workflow input may name (see SourceOverrideSchema). */
export const FileSourceSpecSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('parquet'), path: sourcePath, timeColumn: z.string().optional() }),
  z.object({ kind: z.literal('csv'), path: sourcePath, delimiter: csvDelimiter.optional() }),
  z.object({ kind: z.literal('ndjson'), path: sourcePath }),
]);
export type FileSourceSpec = z.infer<typeof FileSourceSpecSchema>;

/** Every source a definition (code) may read: files, a SQL query, another feature group. */
export const SourceSpecSchema = z.discriminatedUnion('kind', [
  ...FileSourceSpecSchema.options,
  z.object({ kind: z.literal('postgres'), query: z.string().min(1) }),
  z.object({ kind: z.literal('feature_group'), name: identifier, version: z.number().int().positive() }),
]);
export type SourceSpec = z.infer<typeof SourceSpecSchema>;

/** Why a workflow input cannot carry the other source kinds: they exist only in code. */
export const REFUSED_SOURCE_OVERRIDES: Readonly<Record<string, string>> = {
  postgres:
    'SQL sources exist only in the definitions module (FTI_DEFINITIONS), never in a workflow input; a source override may only be a csv, ndjson or parquet file under a data root (FTI_DATA_ROOTS)',
  feature_group:
    'feature_group sources exist only in the definitions module (FTI_DEFINITIONS), never in a workflow input; a source override may only be a csv, ndjson or parquet file under a data root (FTI_DATA_ROOTS)',
};

/**
 * A workflow input's `source`: a one-off file (late rows, a correction) read instead of the
 * definition's source. Never SQL, never another feature group; the path is checked against
 * the data roots by the worker that opens it (only the worker sees its file system).
 */
export const SourceOverrideSchema = z
  .unknown()
  .superRefine((value, ctx) => {
    const kind = value !== null && typeof value === 'object' ? (value as { kind?: unknown }).kind : undefined;
    const refused = typeof kind === 'string' && Object.hasOwn(REFUSED_SOURCE_OVERRIDES, kind) ? REFUSED_SOURCE_OVERRIDES[kind] : undefined;
    if (refused) ctx.addIssue({ code: 'custom', message: refused, path: ['kind'] });
  })
  .pipe(FileSourceSpecSchema) as unknown as z.ZodType<FileSourceSpec, FileSourceSpec>;

export const FeaturePipelineInputSchema = z
  .object({
    featureGroup: identifier,
    version: z.number().int().positive().optional(),
    /** Read this file instead of the definition's source (same kind of rows): a csv, ndjson or parquet file under a data root. */
    source: SourceOverrideSchema.optional(),
    /** Event-time window [start, end): only rows in it are ingested. */
    start: isoTime.optional(),
    end: isoTime.optional(),
    /** For scheduled runs: the window is [fire time - scheduleWindow, fire time). */
    scheduleWindow: duration.optional(),
    /** Rows per partition of a Parquet source (whole row groups; default 250,000, at most 256 partitions). */
    partitionRows: z.number().int().min(1000).max(1e9).optional(),
    parallelism: parallelism.optional(),
    /** Wait for the `upstreamCommitted` signal before planning (ftiPipeline: the feature groups before this one are committed). */
    awaitUpstream: z.boolean().optional(),
    /** Another run of the same chain (a workflow id under this run's parent) to signal `upstreamCommitted` once this commit is made. ftiPipeline sets it. */
    downstream: z.string().min(1).max(1000).optional(),
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
    /**
     * Chunks a new dataset's join is cut into (by a hash of the joined key; two run at a
     * time; default 2). Each chunk is committed on its own: a retried build keeps the
     * chunks it finished.
     */
    datasetChunks: z.number().int().min(1).max(64).optional(),
    /** For scheduled runs: train on [fire time - scheduleWindow, fire time). */
    scheduleWindow: duration.optional(),
    /** How long a training attempt may wait for a GPU worker to pick it up before the run fails; default 10m. */
    gpuWaitTimeout: duration.optional(),
    /**
     * Signal the parent workflow (`modelRegistered`) as soon as the version is registered,
     * before its report is written. ftiPipeline sets it, to score the version beside the report.
     */
    announceVersion: z.boolean().optional(),
    /** Wait for the `upstreamCommitted` signal before building the dataset (ftiPipeline: the chain's feature groups are committed). */
    awaitUpstream: z.boolean().optional(),
  })
  .strict();
export type TrainingPipelineInput = z.input<typeof TrainingPipelineInputSchema>;

/** The whole FTI chain in one run: features, then training, then batch inference. */
export const FtiPipelineInputSchema = z
  .object({
    features: z
      .object({
        /** Feature groups to compute, in order (a derived group after the group it aggregates). */
        groups: z
          .array(identifier)
          .min(1)
          .refine((groups) => new Set(groups).size === groups.length, { message: 'each feature group may be named once' }),
        start: isoTime.optional(),
        end: isoTime.optional(),
      })
      .strict(),
    training: TrainingPipelineInputSchema.omit({ scheduleWindow: true, announceVersion: true, awaitUpstream: true }),
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
