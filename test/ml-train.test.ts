import type * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { FtiError } from '../core/errors.ts';
import { loadBackend, type Tf } from '../ml/backend.ts';
import type { Batch } from '../ml/batches.ts';
import { checkpointOf, restoreCheckpoint, type Checkpoint } from '../ml/checkpoint.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';
import { buildModel, disposeModel, ModelSpecSchema, TrainParamsSchema, type ModelSpecInput } from '../ml/model.ts';
import { collectPredictions, predictBatch, predictRows } from '../ml/predict.ts';
import { denseForward } from '../ml/dense-forward.ts';
import { fusedForward } from '../ml/fused-forward.ts';
import { loadPredictor } from '../ml/predictor.ts';
import { artifactFromModel } from '../ml/artifact.ts';
import { trainModel, type BatchProgress, type EpochProgress } from '../ml/train.ts';

const WIDTH = 4;
const BATCH = 128;

/** Deterministic rows: x uniform in [-1, 1]^4, label = x0 + 0.5·x1 > 0 (or the value, for a regressor). */
function synthetic(n: number, seed: number, kind: 'binary_classifier' | 'regressor' = 'binary_classifier') {
  let s = seed;
  const random = () => ((s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const x = new Float32Array(n * WIDTH).map(() => random());
  const y = new Float32Array(n).map((_, i) => {
    const v = (x[i * WIDTH] as number) + 0.5 * (x[i * WIDTH + 1] as number);
    return kind === 'binary_classifier' ? (v > 0 ? 1 : 0) : 2 * v + 0.5;
  });
  return { x, y, n };
}
type Data = ReturnType<typeof synthetic>;

/** A source like a Postgres cursor: async, batch by batch, counting what it produced and whether it was closed. */
function source(data: Data) {
  const stats = { opened: 0, closed: 0, produced: 0 };
  async function* batches(epoch = 1): AsyncGenerator<Batch> {
    stats.opened += 1;
    try {
      const count = Math.ceil(data.n / BATCH);
      for (let k = 0; k < count; k++) {
        const b = (k * (2 * epoch + 1)) % count; // a different, reproducible batch order each epoch
        const start = b * BATCH;
        const end = Math.min(start + BATCH, data.n);
        await new Promise((resolve) => setImmediate(resolve)); // a real async boundary, like a socket read
        stats.produced += 1;
        yield { x: data.x.slice(start * WIDTH, end * WIDTH), y: data.y.slice(start, end), size: end - start };
      }
    } finally {
      stats.closed += 1;
    }
  }
  return { batches, stats };
}

/** An encoder for four standardized float features a..d, matching WIDTH. */
function floatEncoder() {
  const names = ['a', 'b', 'c', 'd'];
  return createEncoder(
    fitSignature(
      names.map((name) => ({ name, dtype: 'float', encoding: 'standardize' }) as const),
      Object.fromEntries(names.map((n) => [n, { count: 10, mean: 1, std: 2 }])),
      { name: 'y', kind: 'binary_classifier' },
    ),
  );
}

const spec: ModelSpecInput = { hiddenUnits: [16, 8], learningRate: 0.01, seed: 7 };

describe('training on the WASM backend', () => {
  let tfjs: Tf;
  const train = synthetic(2048, 1);
  const test = synthetic(1024, 2);

  beforeAll(async () => {
    tfjs = (await loadBackend('cpu', 'wasm')).tf;
  });

  async function auc(model: tf.LayersModel): Promise<number> {
    const { labels, scores } = await collectPredictions(tfjs, model, source(test).batches());
    return evaluateClassifier(labels, scores).auc ?? Number.NaN;
  }

  it('learns separable data streamed from an async generator, reporting every epoch', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const reported: EpochProgress[] = [];
    const batchProgress: BatchProgress[] = [];
    const data = source(train);
    const result = await trainModel({
      tf: tfjs,
      model,
      epochs: 5,
      trainBatches: data.batches,
      validationBatches: () => source(test).batches(),
      onBatch: (p) => void batchProgress.push(p),
      onEpochEnd: async (p) => {
        reported.push(p);
      },
    });
    expect(result).toMatchObject({ epochsRun: 5, lastEpoch: 5, stoppedEarly: false });
    expect(reported.map((p) => p.epoch)).toEqual([1, 2, 3, 4, 5]);
    expect(result.history).toEqual(reported);
    for (const p of reported) {
      expect(p).toMatchObject({ epochs: 5, samples: 2048 });
      expect(p.valLoss).toBeGreaterThan(0);
      expect(p.samplesPerSecond).toBeGreaterThan(0);
    }
    expect((reported[4] as EpochProgress).loss).toBeLessThan((reported[0] as EpochProgress).loss);
    expect(data.stats).toEqual({ opened: 5, closed: 5, produced: 5 * 16 });
    expect(batchProgress).toHaveLength(5 * 16);
    expect(batchProgress[16]).toEqual({ epoch: 2, batches: 1, samples: BATCH });
    expect(batchProgress.at(-1)).toEqual({ epoch: 5, batches: 16, samples: 2048 });
    expect(await auc(model)).toBeGreaterThan(0.97);
    disposeModel(model);
  });

  it('resumes from a checkpoint where it left off: same weights and Adam state, epochs 3..N only', async () => {
    // Run A: four epochs in one go, checkpointing after epoch 2 as the activity would.
    const a = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    let checkpoint: Checkpoint | undefined;
    const lossesA: number[] = [];
    await trainModel({
      tf: tfjs,
      model: a,
      epochs: 4,
      trainBatches: source(train).batches,
      onEpochEnd: async (p) => {
        lossesA.push(p.loss);
        if (p.epoch === 2) checkpoint = await checkpointOf(tfjs, a, p.epoch);
      },
    });
    expect(checkpoint?.epoch).toBe(2);
    expect(checkpoint?.optimizer?.specs[0]?.name).toBe('iter');

    // Run B: a "new worker" restores epoch 2 into a fresh model and carries on.
    const b = await restoreCheckpoint(tfjs, checkpoint as Checkpoint, spec, 'binary_classifier');
    const seen: number[] = [];
    const lossesB: number[] = [];
    const result = await trainModel({
      tf: tfjs,
      model: b,
      epochs: 4,
      initialEpoch: 2,
      trainBatches: source(train).batches,
      onEpochEnd: (p) => {
        seen.push(p.epoch);
        lossesB.push(p.loss);
      },
    });
    expect(seen).toEqual([3, 4]);
    expect(result).toMatchObject({ epochsRun: 2, lastEpoch: 4, stoppedEarly: false });
    // Not restarted: epoch 3 continues below a fresh model's first epoch...
    expect(lossesB[0]).toBeLessThan(lossesA[0] as number);
    // ...and matches the uninterrupted run, which needs Adam's step count and moments too.
    lossesB.forEach((loss, i) => expect(loss).toBeCloseTo(lossesA[i + 2] as number, 4));
    const [pa, pb] = [await predictBatch(tfjs, a, test.x, test.n), await predictBatch(tfjs, b, test.x, test.n)];
    pa.forEach((p, i) => expect(pb[i]).toBeCloseTo(p, 4));

    // A resume without optimizer state is measurably different (Adam restarts its bias correction).
    const c = await restoreCheckpoint(tfjs, { epoch: 2, artifact: (checkpoint as Checkpoint).artifact }, spec, 'binary_classifier');
    const lossesC: number[] = [];
    await trainModel({ tf: tfjs, model: c, epochs: 3, initialEpoch: 2, trainBatches: source(train).batches, onEpochEnd: (p) => void lossesC.push(p.loss) });
    expect(Math.abs((lossesC[0] as number) - (lossesA[2] as number))).toBeGreaterThan(1e-4);
    [a, b, c].forEach(disposeModel);
  });

  it('refuses optimizer state from a differently shaped model', async () => {
    const small = buildModel(tfjs, { ...spec, hiddenUnits: [4] }, WIDTH, 'binary_classifier');
    await trainModel({ tf: tfjs, model: small, epochs: 1, trainBatches: source(train).batches });
    const saved = await checkpointOf(tfjs, small, 1);
    const other = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const mixed: Checkpoint = { epoch: 1, artifact: (await checkpointOf(tfjs, other, 0)).artifact, ...(saved.optimizer ? { optimizer: saved.optimizer } : {}) };
    await expect(restoreCheckpoint(tfjs, mixed, spec, 'binary_classifier')).rejects.toThrow(/does not match this model/);
    [small, other].forEach(disposeModel);
  });

  it('reports how long each epoch waited for its batches', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const slow = async function* (): AsyncGenerator<Batch> {
      for (let k = 0; k < 4; k++) {
        await new Promise((resolve) => setTimeout(resolve, 150)); // a read far slower than a step on 128 rows
        yield { x: train.x.slice(k * BATCH * WIDTH, (k + 1) * BATCH * WIDTH), y: train.y.slice(k * BATCH, (k + 1) * BATCH), size: BATCH };
      }
    };
    const fast = source(train);
    const [waited, quick] = [await trainModel({ tf: tfjs, model, epochs: 1, trainBatches: slow }), await trainModel({ tf: tfjs, model, epochs: 1, trainBatches: fast.batches })];
    const epoch = waited.history[0] as EpochProgress;
    // Reads of 150 ms that a step (tens of ms at most) cannot hide: most of the epoch was waiting, however far
    // ahead the trainer reads.
    expect(epoch.seconds).toBeGreaterThan(0.2);
    expect(epoch.waitSeconds).toBeGreaterThan(0.5 * epoch.seconds);
    expect(epoch.waitSeconds).toBeLessThanOrEqual(epoch.seconds);
    expect((quick.history[0] as EpochProgress).waitSeconds).toBeLessThan(epoch.waitSeconds);
    disposeModel(model);
  });

  it('stops within a batch when shouldStop turns true mid-epoch, leaves that epoch unreported and closes the source', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const data = source(train);
    const reported: number[] = [];
    const result = await trainModel({
      tf: tfjs,
      model,
      epochs: 5,
      trainBatches: data.batches,
      onEpochEnd: (p) => void reported.push(p.epoch),
      shouldStop: () => data.stats.produced >= 20, // four batches into epoch 2
    });
    expect(result).toMatchObject({ epochsRun: 1, lastEpoch: 1, stoppedEarly: true });
    expect(reported).toEqual([1]);
    expect(data.stats.produced).toBeLessThanOrEqual(21); // read-ahead may have fetched one more
    expect(data.stats).toMatchObject({ opened: 2, closed: 2 });
    disposeModel(model);
  });

  it('stops after the epoch in which shouldStop turned true, without opening the next pass', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const data = source(train);
    let cancelled = false;
    const result = await trainModel({
      tf: tfjs,
      model,
      epochs: 5,
      trainBatches: data.batches,
      onEpochEnd: (p) => {
        if (p.epoch === 2) cancelled = true; // e.g. the heartbeat learned of a cancellation
      },
      shouldStop: () => cancelled,
    });
    expect(result).toMatchObject({ epochsRun: 2, lastEpoch: 2, stoppedEarly: true });
    expect(data.stats).toMatchObject({ opened: 2, closed: 2 });
    disposeModel(model);
  });

  it('keeps the tensor count flat across epochs, runs and dataset sizes', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const counts: number[] = [];
    const run = (data: Data) =>
      trainModel({
        tf: tfjs,
        model,
        epochs: 3,
        trainBatches: source(data).batches,
        validationBatches: () => source(test).batches(),
        onEpochEnd: () => void counts.push(tfjs.memory().numTensors),
      });
    await run(train);
    const afterFirst = tfjs.memory().numTensors;
    await run(synthetic(4 * 2048, 3)); // four times the data
    expect(counts).toHaveLength(6);
    expect(new Set(counts).size).toBe(1);
    expect(tfjs.memory().numTensors).toBe(afterFirst);
    const before = tfjs.memory().numTensors;
    await predictRows(tfjs, model, floatEncoder(), [{ a: 1, b: 2, c: null, d: 0 }]);
    await collectPredictions(tfjs, model, source(test).batches());
    expect(tfjs.memory().numTensors).toBe(before);
    const withModel = tfjs.memory().numTensors;
    disposeModel(model);
    expect(tfjs.memory().numTensors).toBeLessThan(withModel);
  });

  it('computes transposed matrix products as the plain product of the transposes, and frees what it made (wasm-kernels.ts)', async () => {
    // Written out in plain JavaScript: c[i][j] = Σk A[i][k]·B[k][j], A and B as the math says after transposing.
    const product = (a: number[][], b: number[][]) => a.map((row) => (b[0] as number[]).map((_, j) => row.reduce((s, v, k) => s + v * ((b[k] as number[])[j] as number), 0)));
    const transposed = (m: number[][]) => (m[0] as number[]).map((_, j) => m.map((row) => row[j] as number));
    const values = (rows: number, cols: number, seed: number) => Array.from({ length: rows }, (_, i) => Array.from({ length: cols }, (_, j) => ((i * 7 + j * 3 + seed) % 11) / 4 - 1));
    const a = values(5, 3, 1);
    const b = values(5, 4, 2);
    const c = values(3, 4, 3);
    const backend = tfjs.engine().backend;
    const dataIds = backend.numDataIds();
    // Each product in a tidy, so its inputs go with it and only the result is left.
    const cases: Array<[tf.Tensor, number[][]]> = [
      // aᵀ·b (a dense layer's kernel gradient), b·cᵀ (its input gradient), and both flags at once.
      [tfjs.tidy(() => tfjs.matMul(tfjs.tensor2d(a), tfjs.tensor2d(b), true, false)), product(transposed(a), b)],
      [tfjs.tidy(() => tfjs.matMul(tfjs.tensor2d(b), tfjs.tensor2d(c), false, true)), product(b, transposed(c))],
      [tfjs.tidy(() => tfjs.matMul(tfjs.tensor2d(a), tfjs.tensor2d(transposed(b)), true, true)), product(transposed(a), b)],
      // A batch of two (rank 3): only the last two axes swap.
      [tfjs.tidy(() => tfjs.matMul(tfjs.tensor3d([a, a]), tfjs.tensor3d([b, b]), true, false).slice([1, 0, 0], [1, 3, 4]).squeeze([0])), product(transposed(a), b)],
      // The fused form (bias and relu after the product).
      [
        tfjs.tidy(() => tfjs.fused.matMul({ a: tfjs.tensor2d(b), b: tfjs.tensor2d(c), transposeB: true, bias: tfjs.tensor1d([0.5, -0.5, 0]), activation: 'relu' })),
        product(b, transposed(c)).map((row) => row.map((v, j) => Math.max(0, v + ([0.5, -0.5, 0][j] as number)))),
      ],
    ];
    for (const [actual, expected] of cases) {
      const got = (await actual.array()) as number[][];
      expect(got.length).toBe(expected.length);
      got.forEach((row, i) => row.forEach((v, j) => expect(v).toBeCloseTo((expected[i] as number[])[j] as number, 5)));
    }
    // The transposes are this module's own (not the backend's Transpose kernel): on a
    // batch-sized matrix with a column count that is no multiple of four, the product is
    // the very bits of the product of the backend's own transpose.
    const [viaFlag, viaKernel] = tfjs.tidy(() => {
      const x = tfjs.randomUniform([2, 301, 70], -1, 1, 'float32', 5);
      const dy = tfjs.randomUniform([2, 301, 9], -1, 1, 'float32', 6);
      return [tfjs.matMul(x, dy, true, false), tfjs.matMul(tfjs.transpose(x, [0, 2, 1]), dy)];
    });
    expect(Array.from(await viaFlag.data())).toEqual(Array.from(await viaKernel.data()));
    tfjs.dispose([viaFlag, viaKernel]);
    expect(backend.numDataIds()).toBe(dataIds + cases.length);
    tfjs.dispose(cases.map(([t]) => t));
    // Nothing made for the transposes is left behind in the WASM heap.
    expect(backend.numDataIds()).toBe(dataIds);
    // The installed kernels are this project's, and a second install wraps nothing twice.
    const kernel = tfjs.getKernel('BatchMatMul', 'wasm')?.kernelFunc;
    const { installUntransposedProducts } = await import('../ml/wasm-kernels.ts');
    installUntransposedProducts(tfjs);
    expect(tfjs.getKernel('BatchMatMul', 'wasm')?.kernelFunc).toBe(kernel);
  });

  it("sums a matrix over its rows to the very bits of the backend's own sum, and hands every other Sum to it (wasm-kernels.ts)", async () => {
    const backend = tfjs.engine().backend;
    const dataIds = backend.numDataIds();
    const bits = async (t: tf.Tensor) => Buffer.from((await t.data()).buffer).toString('hex');
    // Magnitudes from 1e-3 to 1e3 and both signs: float32 sums taken in any other order round differently.
    const shapes: Array<[number, number]> = [[1024, 64], [1024, 32], [1024, 1], [333, 17], [1, 5]];
    for (const [i, [rows, columns]] of shapes.entries()) {
      const x = tfjs.tidy(() => tfjs.mul(tfjs.randomNormal([rows, columns], 0, 1, 'float32', i + 1), tfjs.pow(tfjs.scalar(10), tfjs.randomUniform([rows, columns], -3, 3, 'float32', i + 7))));
      // Summed over its innermost axis, the transpose goes to the backend's own kernel: the reference.
      const reference = tfjs.tidy(() => tfjs.sum(tfjs.transpose(x), 1));
      const [overRows, kept, negative] = [tfjs.sum(x, 0), tfjs.sum(x, 0, true), tfjs.sum(x, [-2])];
      expect(await bits(overRows)).toBe(await bits(reference));
      expect(await bits(kept)).toBe(await bits(reference));
      expect(await bits(negative)).toBe(await bits(reference));
      expect([overRows.shape, kept.shape]).toEqual([[columns], [1, columns]]);
      tfjs.dispose([x, reference, overRows, kept, negative]);
    }
    // Other reductions are the backend's: over columns, and of everything.
    tfjs.tidy(() => {
      const m = tfjs.tensor2d([[1, 2, 3], [4, 5, 6]]);
      expect(tfjs.sum(m, 1).arraySync()).toEqual([6, 15]);
      expect(tfjs.sum(m).arraySync()).toBe(21);
      expect(tfjs.sum(tfjs.tensor2d([[1, 2], [3, 4]], [2, 2], 'int32'), 0).arraySync()).toEqual([4, 6]);
    });
    // Nothing is left behind in the WASM heap.
    expect(backend.numDataIds()).toBe(dataIds);
    // A second install wraps nothing twice.
    const kernel = tfjs.getKernel('Sum', 'wasm')?.kernelFunc;
    const { installColumnSums } = await import('../ml/wasm-kernels.ts');
    installColumnSums(tfjs);
    expect(tfjs.getKernel('Sum', 'wasm')?.kernelFunc).toBe(kernel);
  });

  it('closes the source and rejects when a batch is malformed mid-epoch', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const closed: string[] = [];
    async function* bad(): AsyncGenerator<Batch> {
      try {
        yield { x: new Float32Array(2 * WIDTH), y: new Float32Array(2), size: 2 };
        yield { x: new Float32Array(3), y: new Float32Array(1), size: 1 };
        yield { x: new Float32Array(WIDTH), y: new Float32Array(1), size: 1 };
      } finally {
        closed.push('closed');
      }
    }
    await expect(trainModel({ tf: tfjs, model, epochs: 2, trainBatches: bad })).rejects.toThrow(/training batch: expected 1×4 x values and 1 labels, got 3 and 1/);
    expect(closed).toEqual(['closed']);
    disposeModel(model);
  });

  it('fails clearly on an empty training split, and does nothing when resuming after the last epoch', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const empty = async function* (): AsyncGenerator<Batch> {};
    await expect(trainModel({ tf: tfjs, model, epochs: 1, trainBatches: empty })).rejects.toBeInstanceOf(FtiError);
    await expect(trainModel({ tf: tfjs, model, epochs: 1, trainBatches: empty })).rejects.toThrow(/produced no rows/);
    let calls = 0;
    const result = await trainModel({ tf: tfjs, model, epochs: 3, initialEpoch: 3, trainBatches: () => (calls++, empty()) });
    expect(result).toMatchObject({ epochsRun: 0, lastEpoch: 3, stoppedEarly: false, history: [] });
    expect(calls).toBe(0);
    disposeModel(model);
  });

  it('trains a regressor with a linear output and mean squared error', async () => {
    const model = buildModel(tfjs, { hiddenUnits: [16], learningRate: 0.02, seed: 3 }, WIDTH, 'regressor');
    await trainModel({ tf: tfjs, model, epochs: 8, trainBatches: source(synthetic(2048, 4, 'regressor')).batches });
    const { labels, scores } = await collectPredictions(tfjs, model, source(synthetic(512, 5, 'regressor')).batches());
    const m = evaluateRegressor(labels, scores);
    expect(m.count).toBe(512);
    expect(m.rmse).toBeLessThan(0.15); // labels span about ±3.5
    disposeModel(model);
  });

  it('predictRows encodes and scores in chunks, matching model.predict', async () => {
    const model = buildModel(tfjs, spec, WIDTH, 'binary_classifier');
    const encoder = floatEncoder();
    const sig = encoder.signature;
    const rows = Array.from({ length: 10 }, (_, i) => ({ a: i, b: -i, c: i % 3 === 0 ? null : i / 2, d: 1 }));
    const scores = await predictRows(tfjs, model, encoder, rows, 3);
    const direct = tfjs.tidy(() => (model.predict(tfjs.tensor2d(encoder.encodeRows(rows), [10, WIDTH])) as tf.Tensor).dataSync());
    expect(scores).toHaveLength(10);
    scores.forEach((s, i) => expect(s).toBeCloseTo(direct[i] as number, 6));
    await expect(predictRows(tfjs, model, createEncoder({ ...sig, inputs: sig.inputs.slice(1) }), rows)).rejects.toThrow(/different versions/);
    disposeModel(model);
  });

  it('scores a few rows in plain JavaScript as TensorFlow.js does, for every activation, with dropout, and through the predictor', async () => {
    let seed = 12345;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 4 - 2;
    for (const [activation, output] of [['relu', 'binary_classifier'], ['elu', 'regressor'], ['tanh', 'binary_classifier']] as const) {
      const model = buildModel(tfjs, { hiddenUnits: [24, 12], activation, dropout: 0.2, seed: 3 }, WIDTH, output);
      const forward = denseForward(model);
      expect(forward).toBeDefined();
      const calls: Array<{ x: Float32Array; size: number; js: Float32Array; copy: Float32Array }> = [];
      for (const size of [1, 7, 40]) {
        // Random inputs, some exactly zero (one-hot columns).
        const x = Float32Array.from({ length: size * WIDTH }, (_, i) => (i % 3 === 0 ? 0 : random()));
        const js = forward?.(x, size) ?? new Float32Array();
        const expected = await predictBatch(tfjs, model, x, size);
        expect(js).toHaveLength(size);
        js.forEach((v, i) => expect(v).toBeCloseTo(expected[i] as number, 5));
        expect(new Set(js).size).toBe(size);
        calls.push({ x, size, js, copy: js.slice() });
      }
      // The pass keeps its hidden layers' buffers between calls: what it handed out is never
      // written again, and a call smaller than the one before scores exactly as it did.
      for (const { x, size, js, copy } of calls) {
        expect(js).toEqual(copy);
        expect(forward?.(x, size)).toEqual(copy);
      }
      // The predictor takes the JavaScript pass for one row, TensorFlow.js for many: the same scores.
      const predictor = await loadPredictor(tfjs, await artifactFromModel(tfjs, model));
      const x = Float32Array.from({ length: 100 * WIDTH }, random);
      const many = await predictor.predict(x, 100);
      for (const r of [0, 42, 99]) expect((await predictor.predict(x.slice(r * WIDTH, (r + 1) * WIDTH), 1))[0]).toBeCloseTo(many[r] as number, 5);
      await expect(predictor.predict(x.subarray(0, 3), 1)).rejects.toThrow(/expected 1×/);
      predictor.dispose();
      disposeModel(model);
    }
    // A topology buildModel never makes keeps TensorFlow.js.
    const other = tfjs.sequential({ layers: [tfjs.layers.dense({ units: 4, inputShape: [WIDTH] }), tfjs.layers.batchNormalization(), tfjs.layers.dense({ units: 1 })] });
    expect(denseForward(other)).toBeUndefined();
    expect(fusedForward(tfjs, other)).toBeUndefined();
    other.dispose();
  });

  it("scores a batch by fused products exactly as the layers model's predict does, for every activation, with dropout, and through the predictor", async () => {
    let seed = 777;
    const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 6 - 3;
    // relu and elu are fused into the product; tanh and the classifier's sigmoid come after it.
    for (const [activation, output] of [['relu', 'binary_classifier'], ['elu', 'regressor'], ['tanh', 'binary_classifier'], ['relu', 'regressor']] as const) {
      const model = buildModel(tfjs, { hiddenUnits: [24, 12], activation, dropout: 0.2, seed: 5 }, WIDTH, output);
      // Biases of a trained model (a new one's are zeros, which would hide a bias left out).
      for (const layer of model.layers) {
        const [kernel, bias] = layer.getWeights();
        if (kernel && bias) layer.setWeights([kernel, tfjs.tensor1d(Array.from({ length: bias.shape[0] as number }, random))]);
      }
      const forward = fusedForward(tfjs, model);
      expect(forward).toBeDefined();
      for (const size of [9, 1000]) {
        const x = Float32Array.from({ length: size * WIDTH }, (_, i) => (i % 4 === 0 ? 0 : random()));
        const expected = await predictBatch(tfjs, model, x, size);
        // Bit for bit, not merely close.
        expect(await forward?.(x, size)).toEqual(expected);
        expect(new Set(expected).size).toBeGreaterThan(size / 2);
      }
      const predictor = await loadPredictor(tfjs, await artifactFromModel(tfjs, model));
      const x = Float32Array.from({ length: 300 * WIDTH }, random);
      expect(await predictor.predict(x, 300)).toEqual(await predictBatch(tfjs, model, x, 300));
      expect(await predictor.predict(new Float32Array(0), 0)).toEqual(new Float32Array(0));
      await expect(predictor.predict(x.subarray(0, 3), 20)).rejects.toThrow(/expected 20×/);
      predictor.dispose();
      disposeModel(model);
    }
  });
});

describe('model params schema', () => {
  it('fills defaults and rejects unknown or out-of-range keys (workflow input validation)', () => {
    expect(TrainParamsSchema.parse({})).toEqual({ family: 'mlp', hiddenUnits: [64, 32], activation: 'relu', dropout: 0, l2: 0, learningRate: 0.001, epochs: 10, batchSize: 512 });
    expect(TrainParamsSchema.safeParse({ hidden_units: [8] }).success).toBe(false);
    expect(ModelSpecSchema.safeParse({ dropout: 1 }).success).toBe(false);
    expect(ModelSpecSchema.safeParse({ hiddenUnits: [0] }).success).toBe(false);
    const a = ModelSpecSchema.parse({});
    a.hiddenUnits.push(1);
    expect(ModelSpecSchema.parse({}).hiddenUnits).toEqual([64, 32]);
  });
});
