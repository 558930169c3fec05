/**
 * The gradient-boosted tree trainer on generated rows: it learns numeric thresholds,
 * categories and where missing values go; it is deterministic; its artifact predicts
 * what it predicted before saving; a resumed run ends with the uninterrupted run's
 * trees; early stopping keeps the best validation round.
 */
import { describe, expect, it } from 'vitest';
import { mulberry32 } from '../core/random.ts';
import { artifactSha256 } from '../ml/artifact.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import { boost, GbdtParamsSchema, type EncodedRows } from '../ml/gbdt/boost.ts';
import { ensembleArtifact, ensembleFromArtifact, predictEnsemble, type Ensemble } from '../ml/gbdt/ensemble.ts';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';
import { TrainParamsSchema } from '../ml/model.ts';
import type { EpochProgress } from '../ml/train.ts';

const WIDTH = 4; // x0 numeric, x1 numeric with missing values, x2 category index (0…9, 10 = other), x3 noise

/** Positives when x0 > 5, when x1 is missing, and in categories 3 and 7. */
function rows(n: number, seed: number, kind: 'classifier' | 'regressor' = 'classifier'): EncodedRows & { truth: Float32Array } {
  const rnd = mulberry32(seed);
  const x = new Float32Array(n * WIDTH);
  const y = new Float32Array(n);
  const truth = new Float32Array(n);
  for (let r = 0; r < n; r++) {
    const x0 = rnd() * 10;
    const x1 = rnd() < 0.2 ? Number.NaN : rnd() * 10;
    const x2 = Math.floor(rnd() * 11);
    x.set([x0, x1, x2, rnd()], r * WIDTH);
    const z = (x0 > 5 ? 1.5 : -1.5) + (Number.isNaN(x1) ? 1.5 : 0) + (x2 === 3 || x2 === 7 ? 1.5 : -0.5);
    truth[r] = z;
    y[r] = kind === 'regressor' ? z + (rnd() - 0.5) * 0.1 : rnd() < 1 / (1 + Math.exp(-z)) ? 1 : 0;
  }
  return { x, y, rows: n, truth };
}

const categories = [0, 0, 10, 0];
const params = (p: Record<string, unknown> = {}) => GbdtParamsSchema.parse({ family: 'gbdt', trees: 30, maxLeaves: 8, minLeafRows: 20, ...p });
const train = rows(20_000, 1);
const validation = rows(4_000, 2);
const test = rows(4_000, 3);

function scoreOf(e: Ensemble, row: number[]): number {
  return predictEnsemble(e, Float32Array.from(row), 1)[0] as number;
}

describe('gradient-boosted trees', () => {
  it('learn thresholds, categories and the direction of missing values', async () => {
    const result = await boost({ train, validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: params() });
    const auc = evaluateClassifier(test.y, predictEnsemble(result.ensemble, test.x, test.rows)).auc ?? 0;
    // Within a hair of the AUC of the true log-odds the labels were drawn from.
    const best = evaluateClassifier(test.y, test.truth.map((z) => 1 / (1 + Math.exp(-z)))).auc ?? 1;
    expect(auc).toBeGreaterThan(best - 0.005);
    const e = result.ensemble;
    expect(scoreOf(e, [8, 2, 0, 0.5])).toBeGreaterThan(scoreOf(e, [2, 2, 0, 0.5])); // x0 above 5
    expect(scoreOf(e, [4, Number.NaN, 0, 0.5])).toBeGreaterThan(scoreOf(e, [4, 2, 0, 0.5])); // missing x1
    expect(scoreOf(e, [4, 2, 7, 0.5])).toBeGreaterThan(scoreOf(e, [4, 2, 6, 0.5])); // category 7
    // An unseen category index scores like "other" (10), never out of bounds.
    expect(scoreOf(e, [4, 2, 99, 0.5])).toBe(scoreOf(e, [4, 2, 10, 0.5]));
    expect(result.history.map((p) => p.epoch)).toEqual(Array.from({ length: result.rounds }, (_, i) => i + 1));
    expect(result.history.at(-1)?.loss).toBeLessThan(result.history[0]?.loss ?? 0);
  });

  it('are deterministic, bagging included, and their artifact predicts what they predicted', async () => {
    const run = () => boost({ train, validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: params({ subsample: 0.5 }) });
    const [a, b] = [await run(), await run()];
    expect(artifactSha256(ensembleArtifact(a.ensemble))).toBe(artifactSha256(ensembleArtifact(b.ensemble)));
    const loaded = ensembleFromArtifact(ensembleArtifact(a.ensemble));
    expect(Array.from(predictEnsemble(loaded, test.x, test.rows))).toEqual(Array.from(predictEnsemble(a.ensemble, test.x, test.rows)));
    const full = await boost({ train, validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: params() });
    expect(artifactSha256(ensembleArtifact(full.ensemble))).not.toBe(artifactSha256(ensembleArtifact(a.ensemble)));
  });

  it('build the same trees, with the same logged losses, on two threads as on one', async () => {
    // The helper thread builds half of each histogram's columns and takes half of the rows'
    // gradients and out-of-bag scores; neither may change a tree or a loss.
    for (const outputKind of ['binary_classifier', 'regressor'] as const) {
      const kind = outputKind === 'regressor' ? 'regressor' : 'classifier';
      const [big, held] = [rows(60_000, 7, kind), rows(4_000, 8, kind)];
      const run = (threads: number) => boost({ train: big, validation: held, width: WIDTH, categories, outputKind, params: params({ trees: 10, maxLeaves: 16, subsample: 0.8 }), threads });
      const [one, two] = [await run(1), await run(2)];
      expect(one.rounds).toBe(10);
      expect(artifactSha256(ensembleArtifact(two.ensemble))).toBe(artifactSha256(ensembleArtifact(one.ensemble)));
      expect(two.history.map((p) => [p.loss, p.valLoss])).toEqual(one.history.map((p) => [p.loss, p.valLoss]));
    }
  });

  it('resumed from a checkpoint, end with the trees of an uninterrupted run', async () => {
    const p = params({ trees: 12, patience: 0, subsample: 0.7 });
    const uninterrupted = await boost({ train, validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: p });
    let checkpoint: { ensemble: Ensemble; history: EpochProgress[] } | undefined;
    await boost({
      train,
      validation,
      width: WIDTH,
      categories,
      outputKind: 'binary_classifier',
      params: p,
      checkpointEvery: 5,
      onCheckpoint: async (round, snapshot, history) => {
        if (round.epoch === 5) checkpoint = { ensemble: ensembleFromArtifact(ensembleArtifact(snapshot())), history: [...history] };
      },
      shouldStop: () => checkpoint !== undefined, // the worker dies after the first checkpoint
    });
    expect(checkpoint?.ensemble.roots.length).toBe(5);
    const resumed = await boost({ train, validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: p, ...(checkpoint ? { resume: checkpoint } : {}) });
    expect(resumed.rounds).toBe(12);
    expect(artifactSha256(ensembleArtifact(resumed.ensemble))).toBe(artifactSha256(ensembleArtifact(uninterrupted.ensemble)));
    expect(resumed.history.map((h) => h.valLoss)).toEqual(uninterrupted.history.map((h) => h.valLoss));
  });

  it('stop early and keep the round with the lowest validation loss', async () => {
    // Big leaves and a high learning rate overfit within a few rounds.
    const result = await boost({ train: rows(2_000, 4), validation, width: WIDTH, categories, outputKind: 'binary_classifier', params: params({ trees: 200, maxLeaves: 64, minLeafRows: 1, learningRate: 1, patience: 5 }) });
    expect(result.rounds).toBeLessThan(200);
    const losses = result.history.map((p) => p.valLoss ?? Number.POSITIVE_INFINITY);
    expect(result.bestRound).toBe(losses.indexOf(Math.min(...losses)) + 1);
    expect(result.rounds).toBe(result.bestRound + 5);
    expect(result.ensemble.roots.length).toBe(result.bestRound);
  });

  it('fit regressors with squared error', async () => {
    const data = rows(20_000, 5, 'regressor');
    const held = rows(4_000, 6, 'regressor');
    const result = await boost({ train: data, width: WIDTH, categories, outputKind: 'regressor', params: params({ trees: 60, learningRate: 0.3 }) });
    const { rmse } = evaluateRegressor(held.y, predictEnsemble(result.ensemble, held.x, held.rows));
    expect(rmse).toBeLessThan(0.2); // the label's own spread is about 2.
  });
});

describe('tree encodings and params', () => {
  it('a gbdt signature keeps numbers (null as NaN) and turns one_hot features into one category index', () => {
    const signature = fitSignature(
      [
        { name: 'distance', dtype: 'float', encoding: 'standardize' },
        { name: 'hour', dtype: 'int', encoding: 'cyclical', period: 24 },
        { name: 'origin', dtype: 'string', encoding: 'one_hot', maxCategories: 2 },
      ],
      { origin: { count: 3, categories: ['SFO', 'ORD', 'ATL'] } },
      { name: 'delayed', kind: 'binary_classifier' },
      'gbdt',
    );
    expect(signature.inputs.map((i) => i.encoding)).toEqual([{ kind: 'number' }, { kind: 'number' }, { kind: 'category', categories: ['SFO', 'ORD'] }]);
    const encoder = createEncoder(signature);
    const x = encoder.encodeRows([
      { distance: 100, hour: 13, origin: 'ORD' },
      { distance: null, hour: null, origin: 'ATL' },
      { distance: 5, hour: 1, origin: null },
    ]);
    expect(Array.from(x)).toEqual([100, 13, 1, Number.NaN, Number.NaN, 2, 5, 1, Number.NaN]);
    expect(encoder.validateRow({ distance: 'far', hour: 1, origin: 'SFO' })).toEqual([expect.stringMatching(/^distance: /)]);
  });

  it('params pick the family: the MLP by default, gbdt with its own knobs only', () => {
    expect(TrainParamsSchema.parse({})).toMatchObject({ family: 'mlp', epochs: 10 });
    expect(TrainParamsSchema.parse({ family: 'gbdt' })).toEqual({ family: 'gbdt', trees: 300, learningRate: 0.1, maxLeaves: 63, maxDepth: 0, minLeafRows: 100, l2: 1, maxBins: 255, subsample: 1, patience: 20, maxRows: 4_000_000 });
    expect(TrainParamsSchema.safeParse({ family: 'gbdt', hiddenUnits: [8] }).success).toBe(false);
    expect(TrainParamsSchema.safeParse({ family: 'forest' }).success).toBe(false);
  });
});
