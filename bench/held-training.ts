/**
 * The training benchmarks' floor: the bench's model trained on batches held in memory
 * (no reading at all), and how their figures are read from a run's epochs. Used by the
 * bench's training child (train-throughput.ts) and by the portable kit (portable/train.ts),
 * which must stay free of the registry and Temporal to bundle small.
 */
import type { LoadedBackend } from '../ml/backend.ts';
import type { Batch } from '../ml/batches.ts';
import { buildModel, disposeModel, type MlpParams, type OutputKind } from '../ml/model.ts';
import { trainModel, type EpochProgress } from '../ml/train.ts';

/** Trains a fresh model of `params` on `held`, every epoch over the same batches. */
export async function trainOnHeldBatches(backend: LoadedBackend, held: readonly Batch[], params: MlpParams, width: number, outputKind: OutputKind): Promise<EpochProgress[]> {
  const { epochs, batchSize: _batchSize, family: _family, ...spec } = params;
  const model = buildModel(backend.tf, spec, width, outputKind);
  try {
    // A batch belongs to the trainer once yielded (the CPU backend wraps its arrays): each epoch gets copies.
    const batches = async function* (): AsyncGenerator<Batch> {
      for (const b of held) yield { x: b.x.slice(), y: b.y.slice(), size: b.size };
    };
    return (await trainModel({ tf: backend.tf, model, epochs, trainBatches: batches })).history;
  } finally {
    disposeModel(model);
  }
}

/** The median over the epochs after the first (which warms up: shader compilation, JIT), or over the one epoch there is. */
export function steadyMedian(history: readonly EpochProgress[], of: (epoch: EpochProgress) => number): number {
  const steady = history.length > 1 ? history.slice(1) : history;
  return [...steady.map(of)].sort((a, b) => a - b)[Math.floor(steady.length / 2)] ?? 0;
}
