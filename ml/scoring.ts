/**
 * A model version made ready to score: its model (either family, predictor.ts), the encoder built
 * from its signature (encoding.ts, the one implementation training uses) and the
 * feature view it was trained on. Batch inference and the online server both score
 * through this, so a row becomes the same model input on every path.
 *
 * It reads the registry through the two small interfaces below (the model registry
 * and the feature store satisfy them), so ml/ never depends on registry/.
 */
import { rowOf, type ColumnBatch } from '../core/columns.ts';
import { FailureType, FtiError } from '../core/errors.ts';
import type { FeatureViewDefinition } from '../features/views.ts';
import type { ModelArtifact } from './artifact.ts';
import type { Tf } from './backend.ts';
import { createEncoder, type Encoder, type ModelFamily } from './encoding.ts';
import { PREDICT_CHUNK } from './predict.ts';
import { loadPredictor, type Predictor } from './predictor.ts';
import type { ModelSignature } from './signature.ts';
import type { FeatureRow } from './values.ts';

/** What scoring needs to know of a registered model version. */
export interface ScorableVersion {
  model: string;
  version: number;
  signature: ModelSignature;
  lineage: { featureView?: { name: string; version: number } };
}

export interface ScoringDeps {
  /** Versions and their verified artifacts (the model registry). */
  models: {
    getModelVersion(name: string, version: number): Promise<ScorableVersion>;
    loadArtifact(name: string, version: number): Promise<ModelArtifact>;
  };
  /** Registered feature views (the feature store). */
  views: { view(name: string, version: number): Promise<{ definition: FeatureViewDefinition }> };
  tf: Tf;
}

/** A row that does not fit the signature, with every problem it has; never scored. */
export interface ScoringReject {
  row: FeatureRow;
  reasons: string[];
}

/** Rows that fit the signature, with one score each, and those that do not, with why. */
export interface ScoredRows {
  rows: FeatureRow[];
  scores: Float32Array;
  rejected: ScoringReject[];
}

/** A batch's rows that fit the signature (their indices in the batch, ascending), one score each, and those that do not. */
export interface ScoredColumns {
  rows: Uint32Array;
  scores: Float32Array;
  rejected: ScoringReject[];
}

export interface ScoringModel {
  model: string;
  version: number;
  /** The registry's record: signature and lineage. */
  record: ScorableVersion;
  /** The feature view the version was trained on (lineage.featureView). */
  view: FeatureViewDefinition;
  encoder: Encoder;
  family: ModelFamily;
  /**
   * Checks every row against the signature while encoding it (one pass), then scores
   * the rows that fit in one forward pass per PREDICT_CHUNK rows. A row that does
   * not fit is never scored: it comes back in `rejected` with every problem it has.
   */
  scoreRows(rows: readonly FeatureRow[]): Promise<ScoredRows>;
  /** scoreRows for a batch held as columns (core/columns.ts): the same checks and scores, with no object per row but the rejected ones. */
  scoreColumns(batch: ColumnBatch): Promise<ScoredColumns>;
  dispose(): void;
}

export async function loadScoringModel(deps: ScoringDeps, name: string, version: number): Promise<ScoringModel> {
  const record = await deps.models.getModelVersion(name, version);
  const ref = record.lineage.featureView;
  if (!ref) {
    throw new FtiError(
      FailureType.InvalidInput,
      `model ${name} v${version} records no feature view in its lineage, so there is no way to look its features up; register versions with lineage.featureView`,
      { model: name, version },
    );
  }
  const view = (await deps.views.view(ref.name, ref.version)).definition;
  assertSignatureFitsView(record, view);
  const encoder = createEncoder(record.signature);

  const predictor = await loadPredictor(deps.tf, await deps.models.loadArtifact(name, version));
  try {
    const width = predictor.width;
    if (width !== encoder.width) {
      throw new FtiError(FailureType.InvalidInput, `model ${name} v${version} takes ${width} inputs but its signature encodes ${encoder.width}`, { model: name, version });
    }
    // The first call on a backend compiles kernels; pay that here, not on a request.
    await predictor.predict(new Float32Array(width), 1);
  } catch (err) {
    predictor.dispose();
    throw err;
  }
  const inputs = new InputBuffers();
  return {
    model: name,
    version,
    record,
    view,
    encoder,
    family: predictor.family,
    scoreRows: (rows) => scoreRows(predictor, encoder, rows),
    scoreColumns: (batch) => scoreColumns(predictor, encoder, batch, inputs),
    dispose: () => predictor.dispose(),
  };
}

async function scoreRows(predictor: Predictor, encoder: Encoder, rows: readonly FeatureRow[]): Promise<ScoredRows> {
  const width = encoder.width;
  const valid: FeatureRow[] = [];
  const rejected: ScoredRows['rejected'] = [];
  const scores = new Float32Array(rows.length);
  const chunk = Math.min(rows.length, PREDICT_CHUNK) * width;
  // The backend may hold on to the array it was given: each chunk is encoded into a
  // fresh one, made when its first row comes (a call of one chunk makes one).
  let x: Float32Array | undefined;
  let n = 0;
  const flush = async () => {
    if (n === 0 || !x) return;
    scores.set(await predictor.predict(n * width === x.length ? x : x.subarray(0, n * width), n), valid.length - n);
    x = undefined;
    n = 0;
  };
  for (const row of rows) {
    x ??= new Float32Array(chunk);
    const reasons = encodeInput(encoder, row, x, n * width);
    if (reasons) {
      rejected.push({ row, reasons });
      continue;
    }
    valid.push(row);
    n++;
    if (n * width === chunk) await flush();
  }
  await flush();
  return { rows: valid, scores: scores.subarray(0, valid.length), rejected };
}

/**
 * Model inputs for scoreColumns, reused from batch to batch: a fresh array per batch
 * (2.2 MB for 8,192 rows of the flights' 67 inputs) cost its zeroing and page faults,
 * about a third as much as encoding into it. A call holds its array until it returns,
 * so calls that overlap (partitions scored at once) take different ones. Reuse is
 * safe once predict has returned: every backend has copied the input by then (into
 * its own memory, when the tensor is made or run), and the tensor is disposed.
 */
class InputBuffers {
  private readonly free: Float32Array[] = [];

  take(length: number): Float32Array {
    const i = this.free.findIndex((b) => b.length >= length);
    const buffer = i >= 0 ? (this.free.splice(i, 1)[0] as Float32Array) : new Float32Array(length);
    return buffer.length === length ? buffer : buffer.subarray(0, length);
  }

  give(x: Float32Array): void {
    // Kept whole (a subarray's buffer), a few at most: as many as partitions score at once.
    if (this.free.length < MAX_FREE_INPUTS) this.free.push(new Float32Array(x.buffer));
  }
}

const MAX_FREE_INPUTS = 4;

async function scoreColumns(predictor: Predictor, encoder: Encoder, batch: ColumnBatch, inputs: InputBuffers): Promise<ScoredColumns> {
  const x = inputs.take(batch.size * encoder.width);
  try {
    return await scoreEncoded(predictor, encoder, batch, x);
  } finally {
    inputs.give(x);
  }
}

async function scoreEncoded(predictor: Predictor, encoder: Encoder, batch: ColumnBatch, x: Float32Array): Promise<ScoredColumns> {
  const width = encoder.width;
  const unsure = encoder.encodeColumns(batch, x);
  const rows = new Uint32Array(batch.size);
  const rejected: ScoringReject[] = [];
  let n = 0;
  for (let i = 0; i < batch.size; i++) {
    if (unsure[i]) {
      // The row path decides: it encodes the row (in its place) or says what is wrong with it.
      const row = rowOf(batch, i);
      const reasons = encodeInput(encoder, row, x, i * width);
      if (reasons) {
        rejected.push({ row, reasons });
        continue;
      }
    }
    // Rows that fit move up over the rejected ones.
    if (n !== i) x.copyWithin(n * width, i * width, (i + 1) * width);
    rows[n++] = i;
  }
  const scores = new Float32Array(n);
  // Each chunk a view of its own part of x, which nothing writes to after this.
  for (let start = 0; start < n; start += PREDICT_CHUNK) {
    const size = Math.min(PREDICT_CHUNK, n - start);
    scores.set(await predictor.predict(x.subarray(start * width, (start + size) * width), size), start);
  }
  return { rows: rows.subarray(0, n), scores, rejected };
}

/**
 * One row's model input, as scoring builds it: the encoder's columns written into
 * `out` at `offset`, or, for a row that does not fit the signature, every problem it
 * has (what was written then is garbage). scoreRows encodes through this, and so does
 * the server's feature route, so a returned vector is exactly what the model is fed.
 */
export function encodeInput(encoder: Encoder, row: FeatureRow, out: Float32Array, offset = 0): string[] | undefined {
  try {
    encoder.encodeRow(row, out, offset);
    return undefined;
  } catch (err) {
    if (!(err instanceof FtiError)) throw err;
    return encoder.validateRow(row);
  }
}

/**
 * Every signature input must be a feature of the view, of a type the encoder can
 * read: otherwise the version was not trained on this view and would score garbage.
 */
export function assertSignatureFitsView(record: ScorableVersion, view: FeatureViewDefinition): void {
  const features = new Map(view.features.map((f) => [f.name, f]));
  const problems: string[] = [];
  for (const input of record.signature.inputs) {
    const f = features.get(input.name);
    if (!f) problems.push(`${input.name} is not a feature of the view`);
    else if (f.dtype !== input.dtype && !(f.dtype === 'int' && input.dtype === 'float')) problems.push(`${input.name} is ${f.dtype} in the view but ${input.dtype} in the signature`);
  }
  if (problems.length) {
    throw new FtiError(
      FailureType.InvalidInput,
      `the signature of model ${record.model} v${record.version} does not fit feature view ${view.name} v${view.version}: ${problems.join('; ')}`,
      { model: record.model, version: record.version },
    );
  }
}
