/**
 * Gradient boosting of histogram trees (Friedman's gradient boosting with Newton leaf
 * steps, as LightGBM and scikit-learn's HistGradientBoosting do it): binary log loss
 * for classifiers, squared error for regressors. The training split lives in memory,
 * binned to one byte per value; the validation split, when given, decides when to
 * stop (the round with the lowest validation loss is kept, and training stops after
 * `patience` rounds without a better one). Nothing is random, so the same rows and
 * params give the same trees on every machine.
 *
 * Progress is reported per round in the MLP trainer's EpochProgress shape (a round is
 * an "epoch"), so checkpoints, heartbeats and the workflow's progress read the same.
 */
import { z } from 'zod';
import { invalid } from '../../core/errors.ts';
import type { OutputKind } from '../model.ts';
import type { EpochProgress } from '../train.ts';
import { binRows, categoricalBins, fitNumericBins, MAX_BINS, type ColumnBins } from './bins.ts';
import { EnsembleBuilder, rawScores, type Ensemble } from './ensemble.ts';
import { histogramOffsets, loadTree, TreeGrower } from './grow.ts';
import { RoundThreads, scoreRange, sharedTreeArrays } from './round-threads.ts';
import { mix32 } from '../../core/hash.ts';
import { availableParallelism } from 'node:os';

export const GbdtParamsSchema = z.strictObject({
  family: z.literal('gbdt'),
  /** Boosting rounds at most (one tree each). */
  trees: z.number().int().min(1).max(10_000).default(300),
  /** Shrinkage of every tree's leaf values. */
  learningRate: z.number().positive().max(1).default(0.1),
  maxLeaves: z.number().int().min(2).max(4096).default(63),
  /** 0: depth is limited by maxLeaves only. */
  maxDepth: z.number().int().min(0).max(64).default(0),
  minLeafRows: z.number().int().min(1).max(1_000_000).default(100),
  /** L2 penalty on leaf values. */
  l2: z.number().min(0).max(1_000_000).default(1),
  /** Bins per numeric column, the missing-value bin included. */
  maxBins: z.number().int().min(3).max(MAX_BINS).default(MAX_BINS),
  /**
   * The share of training rows each tree is grown on (bagging; the rows drawn by a hash
   * of row and round, so runs repeat exactly). Every row's score still moves with every tree.
   */
  subsample: z.number().gt(0).max(1).default(1),
  /** Stop after this many rounds without a lower validation loss (0: never stop early). */
  patience: z.number().int().min(0).max(10_000).default(20),
  /**
   * Rows of a split held in memory at most, which bounds the trainer's memory by
   * configuration rather than by data (about maxRows × (6 × width + 33) bytes per split).
   * A larger split is fitted on its first maxRows rows in the dataset's stored order:
   * that order is a seeded hash of entity keys and event time, so they are a uniform
   * sample of the split, and the same one on every rebuild.
   */
  maxRows: z.number().int().min(1_000).max(1_000_000_000).default(4_000_000),
});
export type GbdtParams = z.output<typeof GbdtParamsSchema>;

/** Rows encoded with the tree encodings: rows × width values, row-major, and one label each. */
export interface EncodedRows {
  x: Float32Array;
  y: Float32Array;
  rows: number;
}

export interface BoostOptions {
  train: EncodedRows;
  validation?: EncodedRows;
  width: number;
  /** Per input column: its number of categories for a categorical one, 0 for a numeric one. */
  categories: readonly number[];
  outputKind: OutputKind;
  params: GbdtParams;
  /** A checkpoint to continue from: its trees and the rounds they came from. */
  resume?: { ensemble: Ensemble; history: EpochProgress[] };
  /** Awaited every `checkpointEvery` rounds (default 25) and after the last one run; `snapshot()` is every tree so far, `history` every round so far. */
  onCheckpoint?: (progress: EpochProgress, snapshot: () => Ensemble, history: readonly EpochProgress[]) => Promise<void>;
  checkpointEvery?: number;
  /** After every round (heartbeat here). */
  onRound?: (progress: EpochProgress) => void;
  /** Polled before every round; true stops with the trees so far. */
  shouldStop?: () => boolean;
  /** Threads building histograms (default: the cores available; 1 or 2 are used). The trees do not depend on it. */
  threads?: number;
}

export interface BoostResult {
  /** The trees up to the best validation round (every tree without a validation split). */
  ensemble: Ensemble;
  history: EpochProgress[];
  /** Rounds run in total (resumed ones included) and the round kept. */
  rounds: number;
  bestRound: number;
  stoppedEarly: boolean;
  samplesPerSecond: number;
}

export async function boost(options: BoostOptions): Promise<BoostResult> {
  const { train, validation, width, params, outputKind } = options;
  const n = train.rows;
  if (n < 1 || train.x.length !== n * width || train.y.length !== n) throw invalid(`boost: expected ${n}×${width} training values and ${n} labels, got ${train.x.length} and ${train.y.length}`);
  if (options.categories.length !== width) throw invalid(`boost: ${options.categories.length} column kinds for ${width} columns`);
  const columns: ColumnBins[] = options.categories.map((k, f) => (k > 0 ? categoricalBins(k) : fitNumericBins(train.x, n, width, f, params.maxBins)));
  // Shared memory: RoundThreads' helper reads the bins, the row order, the labels and
  // the tree, and writes gradients, histograms and scores.
  const binned = { bins: binRows(train.x, n, width, columns, true), rows: n, width, columns };
  const builder = options.resume ? EnsembleBuilder.from(options.resume.ensemble, columns) : new EnsembleBuilder(outputKind, columns, baseScore(train.y, outputKind));
  if (options.resume && options.resume.history.length !== builder.trees) throw invalid(`a checkpoint of ${builder.trees} trees with ${options.resume.history.length} rounds of history`);
  // Raw scores of the model so far; a resume recomputes them from its trees.
  const score = new Float64Array(new SharedArrayBuffer(n * 8));
  if (options.resume) score.set(rawScores(options.resume.ensemble, train.x, n));
  else score.fill(builder.baseScore);
  const y = new Float32Array(new SharedArrayBuffer(n * 4));
  y.set(train.y);
  const inBag = new Uint8Array(new SharedArrayBuffer(n));
  const gradHess = new Float32Array(new SharedArrayBuffer(n * 8));
  const order = new Uint32Array(new SharedArrayBuffer(n * 4));
  const tree = sharedTreeArrays(params.maxLeaves);
  const threads = await RoundThreads.start({ bins: binned.bins, width, offsets: histogramOffsets(columns), order, gradHess, score, y, inBag, tree }, options.threads ?? availableParallelism());
  const grower = new TreeGrower(binned, params, order, threads);
  try {
    return await boostRounds();
  } finally {
    await threads.close();
  }

  async function boostRounds(): Promise<BoostResult> {
    const history = [...(options.resume?.history ?? [])];
    const validationScore = validation && (options.resume ? rawScores(options.resume.ensemble, validation.x, validation.rows) : new Float64Array(validation.rows).fill(builder.baseScore));
    // Validation rows in the same bins: a new tree scores them in bin space, as it was grown.
    const validationBins = validation && binRows(validation.x, validation.rows, width, columns);

    const every = options.checkpointEvery ?? 25;
    let best = bestOf(history);
    let stoppedEarly = false;
    let trainSeconds = 0;

    let last: EpochProgress | undefined;
    for (let round = builder.trees + 1; round <= params.trees; round++) {
      if (best && params.patience > 0 && round - best.epoch > params.patience) break;
      // A round is a few hundred milliseconds of CPU: let heartbeats and cancellation through between rounds.
      await new Promise((resolve) => setImmediate(resolve));
      if (options.shouldStop?.()) {
        stoppedEarly = true;
        break;
      }
      const started = performance.now();
      const loss = threads.gradients(outputKind === 'binary_classifier') / n;
      const bagged = sample(order, inBag, round, params.subsample);
      const grown = grower.grow(bagged);
      const values = builder.add(grown, params.learningRate);
      loadTree(tree, grown, columns, values);
      // The bag's rows by the leaves that hold them; the others (the helper takes half) by walking the tree.
      const addBagged = () =>
        grown.leaves.forEach((leaf, i) => {
          const v = values[i] as number;
          for (let k = leaf.start; k < leaf.end; k++) {
            const r = order[k] as number;
            score[r] = (score[r] as number) + v;
          }
        });
      if (bagged < n) threads.scoreOutOfBag(addBagged);
      else addBagged();
      const seconds = (performance.now() - started) / 1000;
      trainSeconds += seconds;
      let valLoss: number | undefined;
      if (validation && validationScore && validationBins) {
        scoreRange(tree, validationBins, width, validationScore, null, 0, validation.rows);
        valLoss = meanLoss(outputKind, validationScore, validation.y);
      }
      const progress: EpochProgress = {
        epoch: round,
        epochs: params.trees,
        // The training loss this round's tree was fitted to reduce (computed with its gradients).
        loss,
        ...(valLoss === undefined ? {} : { valLoss }),
        samples: n,
        seconds,
        // The splits were read before the first round: a round never waits for rows.
        waitSeconds: 0,
        samplesPerSecond: n / Math.max(seconds, 1e-9),
      };
      history.push(progress);
      if (valLoss !== undefined && (!best || valLoss < (best.valLoss ?? Number.POSITIVE_INFINITY))) best = progress;
      last = progress;
      options.onRound?.(progress);
      if (round % every === 0) await options.onCheckpoint?.(progress, () => builder.build(), history);
    }
    if (last && last.epoch % every !== 0) await options.onCheckpoint?.(last, () => builder.build(), history);
    const rounds = builder.trees;
    const bestRound = best?.epoch ?? rounds;
    const full = builder.build();
    const ensemble = bestRound === rounds ? full : EnsembleBuilder.from(full, columns, bestRound).build();
    const runSamples = (history.length - (options.resume?.history.length ?? 0)) * n;
    return { ensemble, history, rounds, bestRound, stoppedEarly, samplesPerSecond: trainSeconds > 0 ? runSamples / trainSeconds : 0 };
  }
}

/** Puts this round's rows in order[0, count) and marks them in inBag; returns count. */
function sample(order: Uint32Array, inBag: Uint8Array, round: number, share: number): number {
  const n = order.length;
  if (share >= 1) {
    for (let i = 0; i < n; i++) order[i] = i;
    return n;
  }
  const cut = share * 4294967296;
  let count = 0;
  for (let i = 0; i < n; i++) {
    const drawn = mix32(Math.imul(i, 0x9e3779b1) ^ Math.imul(round, 0x85ebca77)) < cut;
    inBag[i] = drawn ? 1 : 0;
    if (drawn) order[count++] = i;
  }
  return count;
}

function bestOf(history: readonly EpochProgress[]): EpochProgress | undefined {
  let best: EpochProgress | undefined;
  for (const p of history) if (p.valLoss !== undefined && (!best || p.valLoss < (best.valLoss ?? Number.POSITIVE_INFINITY))) best = p;
  return best;
}

function baseScore(y: Float32Array, outputKind: OutputKind): number {
  let sum = 0;
  for (const v of y) sum += v;
  const mean = sum / y.length;
  if (outputKind === 'regressor') return mean;
  const p = Math.min(Math.max(mean, 1e-6), 1 - 1e-6);
  return Math.log(p / (1 - p));
}

/** Mean log loss (classifier) or mean squared error (regressor) of raw scores. */
function meanLoss(outputKind: OutputKind, score: Float64Array, y: Float32Array): number {
  let sum = 0;
  if (outputKind === 'regressor') {
    for (let i = 0; i < score.length; i++) sum += ((score[i] as number) - (y[i] as number)) ** 2;
    return sum / Math.max(score.length, 1);
  }
  for (let i = 0; i < score.length; i++) {
    const z = score[i] as number;
    // log(1 + e^z) − y·z, computed without overflow.
    sum += Math.max(z, 0) + Math.log1p(Math.exp(-Math.abs(z))) - (y[i] as number) * z;
  }
  return sum / Math.max(score.length, 1);
}
