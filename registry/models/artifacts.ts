/**
 * Model artifacts in Postgres: topology and weight specs as json, weights as bytea,
 * with the sha256 and size computed on write. Loading recomputes the hash and fails
 * closed: a mismatched artifact is never handed to TensorFlow.js.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { artifactSha256, artifactSize, type ModelArtifact } from '../../ml/artifact.ts';
import { formatRef, refNotFound, whereRef } from './refs.ts';
import type { ModelArtifactRow } from './rows.ts';
import type { LoadedArtifact, ParsedRef } from './types.ts';

/** The only format so far; the column exists so another can be added without a migration of old rows. */
export const ARTIFACT_FORMAT = 'tfjs-layers-model';

const DTYPE_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8 };

/**
 * Refuses an artifact whose weight bytes do not match its weight specs, so a
 * truncated save fails at registration rather than when a server loads it.
 */
export function assertWeightsMatchSpecs(artifact: ModelArtifact): void {
  let expected = 0;
  for (const spec of artifact.weightSpecs) {
    const bytes = DTYPE_BYTES[spec.dtype];
    // Quantized or string weights have no fixed size per element; tfjs checks those on load.
    if (bytes === undefined || spec.quantization) return;
    expected += spec.shape.reduce((n, d) => n * d, 1) * bytes;
  }
  if (expected !== artifact.weightData.byteLength) {
    throw new FtiError(
      FailureType.InvalidInput,
      `artifact weights are ${artifact.weightData.byteLength} bytes but its weight specs describe ${expected} bytes`,
    );
  }
}

/** What is written, prepared outside the transaction (hashing and JSON are CPU work). */
export interface PreparedArtifact {
  modelTopology: string;
  weightSpecs: string;
  trainingConfig: string | null;
  weightData: Buffer;
  sha256: string;
  sizeBytes: number;
}

export function prepareArtifact(artifact: ModelArtifact): PreparedArtifact {
  assertWeightsMatchSpecs(artifact);
  const { weightData } = artifact;
  return {
    // Stored as the exact text artifactSha256 hashes; pg would turn a JS array into a Postgres array.
    modelTopology: JSON.stringify(artifact.modelTopology),
    weightSpecs: JSON.stringify(artifact.weightSpecs),
    trainingConfig: artifact.trainingConfig ? JSON.stringify(artifact.trainingConfig) : null,
    weightData: Buffer.from(weightData.buffer, weightData.byteOffset, weightData.byteLength),
    sha256: artifactSha256(artifact),
    sizeBytes: artifactSize(artifact),
  };
}

/** Resolves `ref` and loads its artifact in one query, then verifies size and sha256. */
export async function loadArtifact(knex: Knex, name: string, ref: ParsedRef): Promise<LoadedArtifact> {
  const query = knex('model_versions as v')
    .join('models as m', 'm.id', 'v.model_id')
    .join('model_artifacts as a', 'a.model_version_id', 'v.id')
    .select('m.name as model_name', 'v.version', 'a.model_topology', 'a.weight_specs', 'a.training_config', 'a.weight_data', 'a.sha256', 'a.size_bytes');
  const row = (await whereRef(query, name, ref).first()) as ModelArtifactRow | undefined;
  if (!row) throw await refNotFound(knex, name, ref);

  const artifact: ModelArtifact = {
    modelTopology: row.model_topology,
    weightSpecs: row.weight_specs,
    weightData: new Uint8Array(row.weight_data.buffer, row.weight_data.byteOffset, row.weight_data.byteLength),
  };
  if (row.training_config) artifact.trainingConfig = row.training_config;

  const where = `${formatRef(name, ref)} (version ${row.version})`;
  const size = artifactSize(artifact);
  const sha256 = artifactSha256(artifact);
  if (size !== row.size_bytes || sha256 !== row.sha256) {
    throw new FtiError(
      FailureType.IntegrityError,
      `artifact of model ${where} failed its integrity check: stored sha256 ${row.sha256} (${row.size_bytes} bytes), ` +
        `computed ${sha256} (${size} bytes); refusing to load a corrupted or tampered model`,
      { model: row.model_name, version: row.version, expectedSha256: row.sha256, actualSha256: sha256 },
    );
  }
  return { ...artifact, model: row.model_name, version: row.version, sha256, sizeBytes: size };
}
