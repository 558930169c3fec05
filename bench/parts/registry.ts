/**
 * Model registry latency: register a version, load (and verify) an artifact, resolve
 * an alias, move an alias. Each is timed call by call, one at a time, after a warm-up,
 * beside a raw-SQL baseline doing the same I/O: a plain INSERT of the same bytes, a
 * plain SELECT of them by primary key, a plain indexed SELECT of the alias row.
 * (Baseline SQL is written out here on purpose: it is what the registry is measured against.)
 */
import { performance } from 'node:perf_hooks';
import type { Knex } from 'knex';
import { artifactFromModel, type ModelArtifact } from '../../ml/artifact.ts';
import type { ModelSignature } from '../../ml/signature.ts';
import { ModelRegistry, type RegisterModelVersionInput } from '../../registry/models/index.ts';
import { measure, percentile, round, timeRatio, type BenchPart, type Figure } from '../harness.ts';

const MODEL = 'bench_mlp';
const BASELINE_TABLE = 'bench_registry_baseline';
const WARMUP = 20;
const REGISTER_CALLS = 300;
const LOAD_CALLS = 300;
const ALIAS_CALLS = 500;

const registryPart: BenchPart = async (ctx) => {
  const registry = new ModelRegistry({ knex: ctx.knex });
  const artifact = await mlpArtifact();
  const bytes = artifact.weightData.byteLength;
  ctx.log('registry: artifact of a 16→64→32→1 MLP', { weightBytes: bytes });

  await ctx.knex.raw('create table ?? (id bigint primary key, model_topology json not null, weight_specs json not null, weight_data bytea not null)', [BASELINE_TABLE]);
  try {
    // Each operation and its baseline alternate call by call, so both see the same
    // noise on this shared machine.
    const register = await paired(
      (i) => registry.registerModelVersion(registration(artifact, i + 1)),
      (i) => rawInsertArtifact(ctx.knex, artifact, i + 1),
      REGISTER_CALLS,
    );
    const versions = WARMUP + REGISTER_CALLS;

    const load = await paired(
      (i) => registry.loadArtifact(MODEL, (i % versions) + 1),
      (i) => rawSelectArtifact(ctx.knex, (i % versions) + 1),
      LOAD_CALLS,
    );

    await registry.setAlias(MODEL, 'champion', versions);
    const resolve = await paired(
      () => registry.resolveModelVersion(MODEL, 'champion'),
      () => rawSelectAlias(ctx.knex),
      ALIAS_CALLS,
    );
    let k = 0;
    const move = await measure(() => registry.setAlias(MODEL, 'champion', (k++ % versions) + 1), { warmup: WARMUP, runs: ALIAS_CALLS });

    const details = { artifactWeightBytes: bytes, calls: 'sequential, one at a time' };
    return [
      ...latencyFigures('registry_register', register.op, { name: 'plain INSERT of the same artifact bytes', samples: register.baseline }, details),
      ...latencyFigures('registry_load', load.op, { name: 'plain SELECT of the artifact bytes by primary key', samples: load.baseline }, { ...details, includes: 'sha256 verification' }),
      ...latencyFigures('registry_alias', resolve.op, { name: 'plain indexed SELECT of the alias row', samples: resolve.baseline }, { ...details, includes: 'full ModelVersion: signature, lineage, commits, aliases' }),
      ...latencyFigures('registry_set_alias', move.samples, undefined, { ...details, includes: 'lock, history row, NOTIFY, commit' }),
    ];
  } finally {
    await ctx.knex.raw('drop table if exists ??', [BASELINE_TABLE]);
  }
};

export default registryPart;

/** Times `op` and `baseline` alternately, `runs` calls each after a warm-up; samples in ms. */
async function paired(op: (i: number) => Promise<unknown>, baseline: (i: number) => Promise<unknown>, runs: number): Promise<{ op: number[]; baseline: number[] }> {
  const samples = { op: [] as number[], baseline: [] as number[] };
  for (let i = 0; i < WARMUP + runs; i++) {
    // Alternate which goes first, so neither always follows the other.
    const order = i % 2 === 0 ? (['op', 'baseline'] as const) : (['baseline', 'op'] as const);
    for (const which of order) {
      const t0 = performance.now();
      await (which === 'op' ? op(i) : baseline(i));
      if (i >= WARMUP) samples[which].push(performance.now() - t0);
    }
  }
  return samples;
}

function latencyFigures(name: string, samples: number[], baseline: { name: string; samples: number[] } | undefined, details: Record<string, unknown>): Figure[] {
  return ([50, 99] as const).map((p) => {
    const value = round(percentile(samples, p), 3);
    const figure: Figure = { name: `${name}_p${p}`, value, unit: 'ms', rows: samples.length, details };
    if (baseline) {
      const base = round(percentile(baseline.samples, p), 3);
      Object.assign(figure, { baseline: baseline.name, baseline_value: base, ratio: timeRatio(value, base) });
    }
    return figure;
  });
}

/** A realistic small model, the flights MLP's shape: 16 → 64 → 32 → 1. */
async function mlpArtifact(): Promise<ModelArtifact> {
  const tf = await import('@tensorflow/tfjs');
  await tf.setBackend('cpu');
  const model = tf.sequential({
    layers: [
      tf.layers.dense({ inputShape: [16], units: 64, activation: 'relu' }),
      tf.layers.dense({ units: 32, activation: 'relu' }),
      tf.layers.dense({ units: 1, activation: 'sigmoid' }),
    ],
  });
  model.compile({ optimizer: 'adam', loss: 'binaryCrossentropy', metrics: ['accuracy'] });
  const artifact = await artifactFromModel(tf, model);
  model.dispose();
  return artifact;
}

const signature: ModelSignature = {
  inputs: Array.from({ length: 16 }, (_, i) => ({ name: `f${i}`, dtype: 'float' as const, encoding: { kind: 'standardize' as const, mean: i, std: 1 + i, fill: i, missingIndicator: false } })),
  output: { name: 'delayed', kind: 'binary_classifier' },
};

function registration(artifact: ModelArtifact, n: number): RegisterModelVersionInput {
  return {
    name: MODEL,
    artifact,
    signature,
    metrics: { auc: 0.7 + (n % 100) / 1000, loss: 0.4 },
    params: { epochs: 5, batchSize: 512, hidden: [64, 32] },
    lineage: {
      featureView: { name: 'flights', version: 1 },
      trainingDatasetId: n,
      featureGroupCommits: [
        { featureGroup: 'airport_delays', version: 1, commitId: n },
        { featureGroup: 'routes', version: 1, commitId: 1 },
      ],
      workflowId: `bench-${n}`,
      runId: 'bench',
      tfjsBackend: 'cpu',
      trainedAt: new Date().toISOString(),
    },
    idempotencyKey: `bench-${n}/register`,
  };
}

async function rawInsertArtifact(knex: Knex, artifact: ModelArtifact, id: number): Promise<void> {
  const { weightData } = artifact;
  await knex(BASELINE_TABLE).insert({
    id,
    model_topology: JSON.stringify(artifact.modelTopology),
    weight_specs: JSON.stringify(artifact.weightSpecs),
    weight_data: Buffer.from(weightData.buffer, weightData.byteOffset, weightData.byteLength),
  });
}

async function rawSelectArtifact(knex: Knex, id: number): Promise<void> {
  const row = await knex(BASELINE_TABLE).select('model_topology', 'weight_specs', 'weight_data').where({ id }).first();
  if (!row) throw new Error(`baseline row ${id} missing`);
}

async function rawSelectAlias(knex: Knex): Promise<void> {
  const row = await knex('model_aliases as a').join('models as m', 'm.id', 'a.model_id').select('a.version').where({ 'm.name': MODEL, 'a.alias': 'champion' }).first();
  if (!row) throw new Error('alias row missing');
}
