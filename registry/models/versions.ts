/**
 * Model versions: registration (numbered N+1 under the per-model lock, idempotent
 * per key), lookups, metrics queries, lineage queries and deletion.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError, invalidInput } from '../../core/errors.ts';
import { FeatureGroupCommitRefSchema, type FeatureGroupCommitRef } from '../../core/refs.ts';
import { inTransaction } from '../db/index.ts';
import { ARTIFACT_FORMAT, prepareArtifact } from './artifacts.ts';
import { assertName, assertVersionNumber, lockModel, modelId, STORE } from './locks.ts';
import { refNotFound, whereRef } from './refs.ts';
import { summaryQuery, toModelSummary, toModelVersion, versionQuery, type ModelSummaryRow, type ModelVersionRow } from './rows.ts';
import {
  RegisterModelVersionSchema,
  type ModelSummary,
  type ParsedRef,
  type ModelVersion,
  type RegisterModelVersionInput,
  type RegisterResult,
} from './types.ts';

export async function registerModelVersion(knex: Knex, input: RegisterModelVersionInput): Promise<RegisterResult> {
  const parsed = RegisterModelVersionSchema.safeParse(input);
  if (!parsed.success) throw invalidInput('model version', parsed.error.issues);
  const { name, signature, metrics, params, lineage, description, idempotencyKey } = parsed.data;
  const artifact = prepareArtifact(input.artifact);
  const commits = uniqueCommits(lineage.featureGroupCommits);

  return inTransaction(knex, STORE, async (trx) => {
    const model = await lockModel(trx, name, { create: true });
    if (idempotencyKey !== undefined) {
      const existing = await trx('model_versions').select<{ id: number } | undefined>('id').where({ model_id: model.id, idempotency_key: idempotencyKey }).first();
      if (existing) {
        const row = (await versionQuery(trx).where('v.id', existing.id).first()) as ModelVersionRow;
        return { version: toModelVersion(row), created: false };
      }
    }
    // The counter on the locked models row, not max(version) + 1: numbers are gap-free
    // across registrations and never reused after a delete.
    const version = model.lastVersion + 1;
    // One round trip for the version, its artifact and its lineage commits.
    const { rows } = (await trx.raw(
      `with m as (
         update models set last_version = :version, updated_at = now() where id = :modelId
       ), v as (
         insert into model_versions (model_id, version, idempotency_key, description, signature, metrics, params,
                                     feature_view_name, feature_view_version, training_dataset_id, workflow_id, run_id,
                                     code_version, tfjs_backend, trained_at, training_seconds)
         values (:modelId, :version, :idempotencyKey, :description, :signature::jsonb, :metrics::jsonb, :params::jsonb,
                 :featureViewName, :featureViewVersion, :trainingDatasetId, :workflowId, :runId,
                 :codeVersion, :tfjsBackend, :trainedAt, :trainingSeconds)
         returning *
       ), a as (
         insert into model_artifacts (model_version_id, format, model_topology, weight_specs, training_config, weight_data, sha256, size_bytes)
         select v.id, :format, :topology::json, :weightSpecs::json, :trainingConfig::json, :weightData, :sha256, :sizeBytes from v
       ), c as (
         insert into model_version_commits (model_version_id, position, feature_group, feature_group_version, commit_id)
         select v.id, c.ord - 1, c.feature_group, c.feature_group_version, c.commit_id
         from v, unnest(:commitGroups::text[], :commitGroupVersions::int[], :commitIds::bigint[]) with ordinality as c(feature_group, feature_group_version, commit_id, ord)
       )
       select * from v`,
      {
        modelId: model.id,
        version,
        idempotencyKey: idempotencyKey ?? null,
        description: description ?? null,
        signature: JSON.stringify(signature),
        metrics: JSON.stringify(metrics),
        params: JSON.stringify(params),
        featureViewName: lineage.featureView?.name ?? null,
        featureViewVersion: lineage.featureView?.version ?? null,
        trainingDatasetId: lineage.trainingDatasetId ?? null,
        workflowId: lineage.workflowId ?? null,
        runId: lineage.runId ?? null,
        codeVersion: lineage.codeVersion ?? null,
        tfjsBackend: lineage.tfjsBackend,
        trainedAt: lineage.trainedAt,
        trainingSeconds: lineage.trainingSeconds ?? null,
        format: ARTIFACT_FORMAT,
        topology: artifact.modelTopology,
        weightSpecs: artifact.weightSpecs,
        trainingConfig: artifact.trainingConfig,
        weightData: artifact.weightData,
        sha256: artifact.sha256,
        sizeBytes: artifact.sizeBytes,
        commitGroups: commits.map((c) => c.featureGroup),
        commitGroupVersions: commits.map((c) => c.version),
        commitIds: commits.map((c) => c.commitId),
      },
    )) as { rows: Array<Omit<ModelVersionRow, 'model_name' | 'artifact_format' | 'artifact_sha256' | 'artifact_size_bytes' | 'feature_group_commits' | 'aliases'>> };
    const [row] = rows;
    if (!row) throw new Error('insert into model_versions returned no row');
    // Everything else is known: no alias can point at a version that is not committed yet.
    const full: ModelVersionRow = {
      ...row,
      model_name: name,
      artifact_format: ARTIFACT_FORMAT,
      artifact_sha256: artifact.sha256,
      artifact_size_bytes: artifact.sizeBytes,
      feature_group_commits: commits,
      aliases: [],
    };
    return { version: toModelVersion(full), created: true };
  });
}

function uniqueCommits(commits: FeatureGroupCommitRef[]): FeatureGroupCommitRef[] {
  const seen = new Map<string, FeatureGroupCommitRef>();
  for (const c of commits) seen.set(`${c.featureGroup}\0${c.version}\0${c.commitId}`, c);
  return [...seen.values()];
}

export async function resolveModelVersion(knex: Knex, name: string, ref: ParsedRef): Promise<ModelVersion> {
  assertName(name, 'model name');
  const row = (await whereRef(versionQuery(knex), name, ref).first()) as ModelVersionRow | undefined;
  if (!row) throw await refNotFound(knex, name, ref);
  return toModelVersion(row);
}

export async function listModels(knex: Knex): Promise<ModelSummary[]> {
  const rows = (await summaryQuery(knex).orderBy('m.name')) as ModelSummaryRow[];
  return rows.map(toModelSummary);
}

export async function listModelVersions(knex: Knex, name: string): Promise<ModelVersion[]> {
  assertName(name, 'model name');
  const rows = (await versionQuery(knex).where('m.name', name).orderBy('v.version')) as ModelVersionRow[];
  if (rows.length === 0) await modelId(knex, name);
  return rows.map(toModelVersion);
}

/** The version with the highest (or lowest) value of `metric`; ties go to the newer version. */
export async function bestVersion(knex: Knex, name: string, metric: string, mode: 'max' | 'min'): Promise<ModelVersion | undefined> {
  assertName(name, 'model name');
  if (typeof metric !== 'string' || metric.length === 0) throw new FtiError(FailureType.InvalidInput, 'bestVersion needs a metric name');
  if (mode !== 'max' && mode !== 'min') throw new FtiError(FailureType.InvalidInput, `bestVersion mode is 'max' or 'min', got ${JSON.stringify(mode)}`);
  const row = (await versionQuery(knex)
    .where('m.name', name)
    .whereRaw(`jsonb_typeof(v.metrics -> ?) = 'number'`, [metric])
    .orderByRaw(`(v.metrics ->> ?)::float8 ${mode === 'max' ? 'desc' : 'asc'}, v.version desc`, [metric])
    .first()) as ModelVersionRow | undefined;
  if (!row) await modelId(knex, name);
  return row ? toModelVersion(row) : undefined;
}

/** Every model version whose training read this feature group commit. */
export async function versionsUsingCommit(knex: Knex, commit: FeatureGroupCommitRef): Promise<ModelVersion[]> {
  const parsed = FeatureGroupCommitRefSchema.safeParse(commit);
  if (!parsed.success) throw invalidInput('feature group commit reference', parsed.error.issues);
  const { featureGroup, version, commitId } = parsed.data;
  const rows = (await versionQuery(knex)
    .whereExists((q) => {
      q.select(knex.raw('1'))
        .from('model_version_commits as c')
        .whereRaw('c.model_version_id = v.id')
        .where({ 'c.feature_group': featureGroup, 'c.feature_group_version': version, 'c.commit_id': commitId });
    })
    .orderBy([{ column: 'm.name' }, { column: 'v.version' }])) as ModelVersionRow[];
  return rows.map(toModelVersion);
}

/** Refused (Conflict) while any alias points at the version; the FK backs this up. */
export async function deleteModelVersion(knex: Knex, name: string, version: number): Promise<void> {
  assertName(name, 'model name');
  assertVersionNumber(version);
  await inTransaction(knex, STORE, async (trx) => {
    const model = await lockModel(trx, name);
    const aliases = await trx('model_aliases').where({ model_id: model.id, version }).orderBy('alias').pluck<string[]>('alias');
    if (aliases.length) {
      throw new FtiError(
        FailureType.Conflict,
        `cannot delete ${name}@${version}: alias${aliases.length > 1 ? 'es' : ''} ${aliases.join(', ')} point${aliases.length > 1 ? '' : 's'} at it; move ${aliases.length > 1 ? 'them' : 'it'} to another version first`,
        { model: name, version, aliases },
      );
    }
    const deleted = await trx('model_versions').where({ model_id: model.id, version }).del();
    if (deleted === 0) throw await refNotFound(trx, name, { kind: 'version', version });
    await trx('models').where({ id: model.id }).update({ updated_at: trx.fn.now() });
  });
}
