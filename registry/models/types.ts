/**
 * The model registry's domain types and the validation of what callers hand in.
 * Database rows never leave registry/: rows.ts maps them onto these types.
 */
import { z } from 'zod';
import { IDENTIFIER } from '../../core/names.ts';
import { FeatureGroupCommitRefSchema } from '../../core/refs.ts';
import type { ModelArtifact } from '../../ml/artifact.ts';
import { ModelSignatureSchema, type ModelSignature } from '../../ml/signature.ts';

const identifier = z.string().regex(IDENTIFIER, 'must match ^[a-z][a-z0-9_]{0,62}$');
const positiveInt = z.number().int().positive();

/** What data, workflow and code produced a model version. */
export const ModelLineageSchema = z.object({
  featureView: z.object({ name: identifier, version: positiveInt }).optional(),
  trainingDatasetId: positiveInt.optional(),
  /** The feature group commits the training dataset read. */
  featureGroupCommits: z.array(FeatureGroupCommitRefSchema),
  workflowId: z.string().min(1).optional(),
  runId: z.string().min(1).optional(),
  /** git sha of the training code, when known. */
  codeVersion: z.string().min(1).optional(),
  /** The TensorFlow.js backend that trained it (`tf.getBackend()`). */
  tfjsBackend: z.string().min(1),
  /** When training finished, ISO 8601. */
  trainedAt: z.iso.datetime({ offset: true }),
  trainingSeconds: z.number().nonnegative().optional(),
});
export type ModelLineage = z.infer<typeof ModelLineageSchema>;

export const MetricsSchema = z.record(z.string().min(1), z.number().refine(Number.isFinite, 'must be a finite number'));
export type ModelMetrics = z.infer<typeof MetricsSchema>;

export const ParamsSchema = z.record(z.string().min(1), z.json());
export type ModelParams = z.infer<typeof ParamsSchema>;

const ArtifactSchema = z.object({
  modelTopology: z.record(z.string(), z.unknown()),
  weightSpecs: z.array(z.object({ name: z.string(), shape: z.array(z.number().int().nonnegative()), dtype: z.string() }).loose()),
  weightData: z.instanceof(Uint8Array),
  trainingConfig: z.record(z.string(), z.unknown()).optional(),
});

export const RegisterModelVersionSchema = z.object({
  name: identifier,
  artifact: ArtifactSchema,
  signature: ModelSignatureSchema,
  metrics: MetricsSchema.default({}),
  params: ParamsSchema.default({}),
  lineage: ModelLineageSchema,
  idempotencyKey: z.string().min(1).max(500).optional(),
  description: z.string().max(10_000).optional(),
});

export interface RegisterModelVersionInput {
  name: string;
  artifact: ModelArtifact;
  signature: ModelSignature;
  metrics?: ModelMetrics;
  params?: ModelParams;
  lineage: ModelLineage;
  /**
   * Makes the registration idempotent per model: a later call with the same key
   * returns the version the first one made (`created: false`). Pass the workflow id
   * + step (e.g. `${workflowId}/register`) so an activity retry cannot make a second
   * version. There is deliberately no default: a workflow that registers several
   * candidates of one model must not have them collapse into one.
   */
  idempotencyKey?: string;
  description?: string;
}

/** One immutable version of a model, without its weight bytes. */
export interface ModelVersion {
  model: string;
  version: number;
  description: string | null;
  signature: ModelSignature;
  metrics: ModelMetrics;
  params: ModelParams;
  lineage: ModelLineage;
  artifact: { format: string; sha256: string; sizeBytes: number };
  /** Aliases that point at this version now. */
  aliases: string[];
  idempotencyKey: string | null;
  createdAt: Date;
}

export interface RegisterResult {
  version: ModelVersion;
  /** False when an earlier call with the same idempotency key made this version. */
  created: boolean;
}

export interface ModelSummary {
  name: string;
  /** Highest existing version, or null when every version was deleted. */
  latestVersion: number | null;
  versionCount: number;
  /** alias → version */
  aliases: Record<string, number>;
  createdAt: Date;
  updatedAt: Date;
}

/** An artifact as loaded from the registry: verified, and tagged with what it is. */
export interface LoadedArtifact extends ModelArtifact {
  model: string;
  version: number;
  sha256: string;
  sizeBytes: number;
}

/** A version reference: a number, an alias name, or 'latest'. */
export type VersionRef = number | string;

/** A VersionRef once checked: what it names. */
export type ParsedRef = { kind: 'version'; version: number } | { kind: 'alias'; alias: string } | { kind: 'latest' };

export interface ModelAlias {
  model: string;
  alias: string;
  version: number;
  updatedAt: Date;
}

export type AliasMoveKind = 'set' | 'rollback';

/** One row of an alias's append-only history. */
export interface AliasMove {
  id: number;
  model: string;
  alias: string;
  kind: AliasMoveKind;
  /** null for the move that created the alias. */
  fromVersion: number | null;
  toVersion: number;
  /** For a rollback: the id of the 'set' move it undid. */
  undoesId: number | null;
  actor: string | null;
  reason: string | null;
  at: Date;
}

export interface AliasChange {
  model: string;
  alias: string;
  kind: AliasMoveKind;
  fromVersion: number | null;
  toVersion: number;
  /** False when the alias already pointed there: nothing recorded, nothing announced. */
  changed: boolean;
  /** The history row written, when changed. */
  move?: AliasMove;
}

export interface AliasMoveOptions {
  /** Who moved it (a user, or a workflow id). */
  actor?: string;
  reason?: string;
  /**
   * Compare-and-set (setAlias only): the version the caller read the alias at, or
   * null for "the alias must not exist yet". Checked under the model's lock; if the
   * alias points elsewhere by then, nothing moves and the call fails with Conflict.
   * A move to where the alias already points succeeds unchanged whatever this says.
   */
  expectedVersion?: number | null;
}

/** The payload of a NOTIFY on ALIAS_CHANNEL. */
export interface AliasNotification {
  schema: string;
  model: string;
  alias: string;
  version: number;
}

export const ALIAS_CHANNEL = 'fti_model_alias';
export const LATEST = 'latest';
