/**
 * The latest checkpoint of each training run, so a retried train activity (its
 * worker died) resumes from the last completed epoch. One row per run, replaced
 * every epoch; the final one holds the trained model until it is registered.
 *
 * Stored as one bytea: a JSON header (epoch, signature, specs, history) followed by
 * the model's weight bytes and the optimizer's state bytes.
 */
import type { Knex } from 'knex';
import type { Checkpoint } from '../../ml/checkpoint.ts';
import type { ModelSignature } from '../../ml/signature.ts';
import type { EpochProgress } from '../../ml/train.ts';

export interface StoredCheckpoint {
  runKey: string;
  checkpoint: Checkpoint;
  signature: ModelSignature;
  history: EpochProgress[];
}

interface Header {
  epoch: number;
  signature: ModelSignature;
  modelTopology: Checkpoint['artifact']['modelTopology'];
  weightSpecs: Checkpoint['artifact']['weightSpecs'];
  trainingConfig?: Checkpoint['artifact']['trainingConfig'];
  weightBytes: number;
  optimizerSpecs?: NonNullable<Checkpoint['optimizer']>['specs'];
}

export function encodeCheckpoint(stored: Omit<StoredCheckpoint, 'runKey' | 'history'>): Buffer {
  const { checkpoint, signature } = stored;
  const header: Header = {
    epoch: checkpoint.epoch,
    signature,
    modelTopology: checkpoint.artifact.modelTopology,
    weightSpecs: checkpoint.artifact.weightSpecs,
    trainingConfig: checkpoint.artifact.trainingConfig,
    weightBytes: checkpoint.artifact.weightData.byteLength,
    optimizerSpecs: checkpoint.optimizer?.specs,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.byteLength);
  return Buffer.concat([length, json, checkpoint.artifact.weightData, checkpoint.optimizer?.data ?? new Uint8Array(0)]);
}

export function decodeCheckpoint(bytes: Buffer): Omit<StoredCheckpoint, 'runKey' | 'history'> {
  const headerLength = bytes.readUInt32BE(0);
  const header = JSON.parse(bytes.subarray(4, 4 + headerLength).toString('utf8')) as Header;
  const weightsStart = 4 + headerLength;
  const weightData = new Uint8Array(bytes.subarray(weightsStart, weightsStart + header.weightBytes));
  const optimizerData = new Uint8Array(bytes.subarray(weightsStart + header.weightBytes));
  return {
    signature: header.signature,
    checkpoint: {
      epoch: header.epoch,
      artifact: { modelTopology: header.modelTopology, weightSpecs: header.weightSpecs, weightData, trainingConfig: header.trainingConfig },
      ...(header.optimizerSpecs ? { optimizer: { specs: header.optimizerSpecs, data: optimizerData } } : {}),
    },
  };
}

export async function saveCheckpoint(knex: Knex, stored: StoredCheckpoint): Promise<void> {
  await knex('training_checkpoints')
    .insert({ run_key: stored.runKey, epoch: stored.checkpoint.epoch, checkpoint: encodeCheckpoint(stored), history: JSON.stringify(stored.history), updated_at: knex.fn.now() })
    .onConflict('run_key')
    .merge();
}

export async function loadCheckpoint(knex: Knex, runKey: string): Promise<StoredCheckpoint | undefined> {
  const row = await knex('training_checkpoints').where({ run_key: runKey }).first<{ checkpoint: Buffer; history: EpochProgress[] } | undefined>();
  if (!row) return undefined;
  return { runKey, history: row.history, ...decodeCheckpoint(row.checkpoint) };
}

export async function deleteCheckpoint(knex: Knex, runKey: string): Promise<void> {
  await knex('training_checkpoints').where({ run_key: runKey }).delete();
}
