/**
 * Row shapes of the model registry's tables, the shared SELECTs that produce them,
 * and the mappers onto domain types (rows never leave registry/).
 */
import type { Knex } from 'knex';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { ModelArtifact } from '../../ml/artifact.ts';
import { ModelSignatureSchema } from '../../ml/signature.ts';
import type { AliasMove, AliasMoveKind, ModelAlias, ModelLineage, ModelMetrics, ModelParams, ModelSummary, ModelVersion } from './types.ts';

export interface ModelVersionRow {
  id: number;
  model_id: number;
  model_name: string;
  version: number;
  idempotency_key: string | null;
  description: string | null;
  signature: unknown;
  metrics: ModelMetrics;
  params: ModelParams;
  feature_view_name: string | null;
  feature_view_version: number | null;
  training_dataset_id: number | null;
  workflow_id: string | null;
  run_id: string | null;
  code_version: string | null;
  tfjs_backend: string;
  trained_at: Date;
  training_seconds: number | null;
  created_at: Date;
  artifact_format: string;
  artifact_sha256: string;
  artifact_size_bytes: number;
  feature_group_commits: FeatureGroupCommitRef[];
  aliases: string[];
}

/**
 * Versions with everything a ModelVersion needs, in one round trip: `v` is
 * model_versions, `m` its model. Callers add where/order clauses.
 */
export function versionQuery(knex: Knex): Knex.QueryBuilder {
  return knex('model_versions as v')
    .join('models as m', 'm.id', 'v.model_id')
    .join('model_artifacts as a', 'a.model_version_id', 'v.id')
    .select('v.*', 'm.name as model_name', 'a.format as artifact_format', 'a.sha256 as artifact_sha256', 'a.size_bytes as artifact_size_bytes')
    .select(
      knex.raw(`(
        select coalesce(json_agg(json_build_object('featureGroup', c.feature_group, 'version', c.feature_group_version, 'commitId', c.commit_id)
                                 order by c.position), '[]'::json)
        from model_version_commits c where c.model_version_id = v.id
      ) as feature_group_commits`),
      knex.raw('array(select al.alias from model_aliases al where al.model_id = v.model_id and al.version = v.version order by al.alias) as aliases'),
    );
}

export function toModelVersion(row: ModelVersionRow): ModelVersion {
  return {
    model: row.model_name,
    version: row.version,
    description: row.description,
    // Validated on write; parsing again keeps a hand-edited row from reaching inference.
    signature: ModelSignatureSchema.parse(row.signature),
    metrics: row.metrics,
    params: row.params,
    lineage: toLineage(row),
    artifact: { format: row.artifact_format, sha256: row.artifact_sha256, sizeBytes: row.artifact_size_bytes },
    aliases: row.aliases,
    idempotencyKey: row.idempotency_key,
    createdAt: row.created_at,
  };
}

function toLineage(row: ModelVersionRow): ModelLineage {
  const lineage: ModelLineage = {
    featureGroupCommits: row.feature_group_commits,
    tfjsBackend: row.tfjs_backend,
    trainedAt: row.trained_at.toISOString(),
  };
  // Optional fields are left out rather than null, as they were handed in.
  if (row.feature_view_name !== null && row.feature_view_version !== null) lineage.featureView = { name: row.feature_view_name, version: row.feature_view_version };
  if (row.training_dataset_id !== null) lineage.trainingDatasetId = row.training_dataset_id;
  if (row.workflow_id !== null) lineage.workflowId = row.workflow_id;
  if (row.run_id !== null) lineage.runId = row.run_id;
  if (row.code_version !== null) lineage.codeVersion = row.code_version;
  if (row.training_seconds !== null) lineage.trainingSeconds = row.training_seconds;
  return lineage;
}

export interface ModelArtifactRow {
  model_name: string;
  version: number;
  model_topology: Record<string, unknown>;
  weight_specs: ModelArtifact['weightSpecs'];
  training_config: Record<string, unknown> | null;
  weight_data: Buffer;
  sha256: string;
  size_bytes: number;
}

export interface ModelSummaryRow {
  name: string;
  latest_version: number | null;
  version_count: number;
  aliases: Record<string, number>;
  created_at: Date;
  updated_at: Date;
}

export function summaryQuery(knex: Knex): Knex.QueryBuilder {
  return knex('models as m').select(
    'm.name',
    'm.created_at',
    'm.updated_at',
    knex.raw('(select max(v.version) from model_versions v where v.model_id = m.id) as latest_version'),
    knex.raw('(select count(*) from model_versions v where v.model_id = m.id)::int as version_count'),
    knex.raw(`(select coalesce(json_object_agg(a.alias, a.version order by a.alias), '{}'::json) from model_aliases a where a.model_id = m.id) as aliases`),
  );
}

export function toModelSummary(row: ModelSummaryRow): ModelSummary {
  return {
    name: row.name,
    latestVersion: row.latest_version,
    versionCount: row.version_count,
    aliases: row.aliases,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export interface ModelAliasRow {
  model_name: string;
  alias: string;
  version: number;
  updated_at: Date;
}

export function toModelAlias(row: ModelAliasRow): ModelAlias {
  return { model: row.model_name, alias: row.alias, version: row.version, updatedAt: row.updated_at };
}

export interface AliasMoveRow {
  id: number;
  model_name: string;
  alias: string;
  kind: AliasMoveKind;
  from_version: number | null;
  to_version: number;
  undoes_id: number | null;
  actor: string | null;
  reason: string | null;
  at: Date;
}

export function toAliasMove(row: AliasMoveRow): AliasMove {
  return {
    id: row.id,
    model: row.model_name,
    alias: row.alias,
    kind: row.kind,
    fromVersion: row.from_version,
    toVersion: row.to_version,
    undoesId: row.undoes_id,
    actor: row.actor,
    reason: row.reason,
    at: row.at,
  };
}
