/**
 * Honest promotion: a candidate and the alias's holder are scored on the same rows
 * (the candidate's validation split, the holder through its own feature view), the
 * alias moves by compare-and-set under the model's lock, and a model version is
 * registered only with a code version outside development.
 *
 * One day of the flights example, through the real feature pipeline; model versions
 * of differing quality are trained briefly on the WASM backend and registered as the
 * training pipeline registers them; the activities run through MockActivityEnvironment.
 */
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { featureSpecs } from '../activities/training-run.ts';
import { createTrainingActivities, type PromotionDecision, type RegisteredModel, type TrainResult } from '../activities/training.ts';
import { deploymentMode } from '../activities/code-version.ts';
import { FailureType, FtiError } from '../core/errors.ts';
import type { PromotionPolicy } from '../core/inputs.ts';
import project, { airportDelays, flightDelays, flights } from '../examples/flights/definitions.ts';
import { defineFeatureView } from '../features/views.ts';
import { modelFromArtifact } from '../ml/artifact.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import { checkpointOf } from '../ml/checkpoint.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import { evaluateClassifier } from '../ml/metrics.ts';
import { buildModel, disposeModel } from '../ml/model.ts';
import { predictRows } from '../ml/predict.ts';
import { createKnex } from '../registry/db/index.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { ModelRegistry, type AliasChange, type AliasMoveOptions } from '../registry/models/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import { ingestFlights } from './helpers/flights.ts';
import { registerModelVersion } from './helpers/models.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const day = { start: '2001-01-03T00:00:00.000Z', end: '2001-01-04T00:00:00.000Z' };
const policy: PromotionPolicy = { alias: 'champion', metric: 'auc', minDelta: 0 };

/** Another view of the same spine: fewer features, one renamed, so none of its columns is the dataset's. */
const liteView = defineFeatureView({
  name: 'flight_delays_lite',
  version: 1,
  spine: flights,
  label: 'delayed',
  joins: [{ group: airportDelays, on: { airport: 'origin' } }],
  features: [{ feature: 'flights.distance', as: 'route_distance' }, { feature: 'flights.hour', encoding: 'cyclical', period: 24 }, 'airport_delays.delay_mean_24h', 'airport_delays.delayed_share_7d'],
});

/** Holds the first two setAlias calls until both have arrived: two promotions that read the same holder race to move it. */
class RacingRegistry extends ModelRegistry {
  private readonly arrived: Array<() => void> = [];

  override async setAlias(name: string, alias: string, version: number, options?: AliasMoveOptions): Promise<AliasChange> {
    if (this.arrived.length < 2) {
      await new Promise<void>((resolve) => {
        this.arrived.push(resolve);
        if (this.arrived.length === 2) for (const go of this.arrived) go();
      });
    }
    return super.setAlias(name, alias, version, options);
  }
}

describe('promotion: the same rows, compare-and-set, code versions', () => {
  let db: TestDb;
  let owner: Knex;
  let temporal: TestTemporal;
  let backend: LoadedBackend;
  let cpu: RunningWorker;
  let registry: ModelRegistry;
  let features: FeatureStore;
  let training: TrainingStore;

  beforeAll(async () => {
    db = await createTestDb('promotion');
    owner = createKnex({ url: db.urlFor('owner'), schema: db.schema, poolMax: 1, applicationName: 'fti-test-promotion-owner' });
    temporal = await createTestTemporal('promotion');
    backend = await loadBackend('cpu', 'wasm');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    registry = new ModelRegistry({ knex: db.knex });
    features = new FeatureStore({ knex: db.knex });
    training = new TrainingStore({ knex: db.knex });
    await ingestFlights(temporal, day);
  });

  afterAll(async () => {
    await cpu?.stop();
    await temporal?.close();
    await owner?.destroy();
    await db?.close();
  });

  const activities = (reg: ModelRegistry = registry, codeVersion?: () => string | null) =>
    createTrainingActivities({ features, training, registry: reg, views: project.featureViews, backend, ...(codeVersion ? { codeVersion } : {}) });

  const promote = (acts: ReturnType<typeof activities>, model: string, version: number) =>
    new MockActivityEnvironment().run<[{ model: string; version: number; policy: PromotionPolicy }], PromotionDecision, typeof acts.promoteModel>(acts.promoteModel, {
      model,
      version,
      policy,
    });

  /** An independent path to a version's validation AUC: its own dataset's validation split, the artifact loaded by hand. */
  async function validationAuc(model: string, version: number): Promise<{ auc: number; rows: number }> {
    const record = await registry.getModelVersion(model, version);
    const dataset = await training.dataset(record.lineage.trainingDatasetId ?? -1);
    const label = record.signature.output.name;
    const rows: Array<Record<string, unknown>> = [];
    for await (const batch of training.streamSplit(dataset, 'validation', [...record.signature.inputs.map((i) => i.name), label])) rows.push(...batch);
    const tfModel = await modelFromArtifact(backend.tf, await registry.loadArtifact(model, version));
    try {
      const scores = await predictRows(backend.tf, tfModel, createEncoder(record.signature), rows);
      const auc = evaluateClassifier(rows.map((r) => (r[label] ? 1 : 0)), scores).auc;
      if (auc === null) throw new Error('one class only');
      return { auc, rows: rows.length };
    } finally {
      disposeModel(tfModel);
    }
  }

  /** Stored (test) metrics that lie: a decision that read them would go the wrong way. */
  async function storeMetrics(model: string, version: number, metrics: Record<string, number>): Promise<void> {
    const updated = await owner('model_versions')
      .whereIn('model_id', owner('models').select('id').where({ name: model }))
      .andWhere({ version })
      .update({ metrics: JSON.stringify(metrics) });
    expect(updated).toBe(1);
  }

  describe('compare-and-set on setAlias', () => {
    it('moves only from the version the caller read; a stale expectation is a Conflict and moves nothing', async () => {
      const a = await registerModelVersion(db.knex, backend.tf, { model: 'cas_model', view: flightDelays, ...day, seed: 1, epochs: 0 });
      const b = await registerModelVersion(db.knex, backend.tf, { model: 'cas_model', view: flightDelays, ...day, seed: 2, epochs: 0 });
      const c = await registerModelVersion(db.knex, backend.tf, { model: 'cas_model', view: flightDelays, ...day, seed: 3, epochs: 0 });

      // null: the alias must not exist yet.
      expect(await registry.setAlias('cas_model', 'champion', a.version, { expectedVersion: null })).toMatchObject({ changed: true, fromVersion: null, toVersion: a.version });
      const conflict = (p: Promise<unknown>) => p.then(() => expect.fail('expected a Conflict'), (err: unknown) => err as FtiError);
      const exists = await conflict(registry.setAlias('cas_model', 'champion', b.version, { expectedVersion: null }));
      expect(exists).toBeInstanceOf(FtiError);
      expect(exists.type).toBe(FailureType.Conflict);
      expect(exists.message).toMatch(/points at version 1, but the move to version 2 expected it not to exist yet/);

      const stale = await conflict(registry.setAlias('cas_model', 'champion', b.version, { expectedVersion: c.version }));
      expect(stale.type).toBe(FailureType.Conflict);
      expect(stale.details).toMatchObject({ expectedVersion: c.version, currentVersion: a.version });
      expect((await registry.getAlias('cas_model', 'champion')).version).toBe(a.version);
      expect(await registry.aliasHistory('cas_model', 'champion')).toHaveLength(1);

      // The right expectation moves it.
      expect(await registry.setAlias('cas_model', 'champion', b.version, { expectedVersion: a.version })).toMatchObject({ changed: true, fromVersion: a.version, toVersion: b.version });
      // Pointing it where it already points changes nothing, whatever was expected.
      expect(await registry.setAlias('cas_model', 'champion', b.version, { expectedVersion: a.version })).toMatchObject({ changed: false });

      // Two writers that read the same holder: exactly one moves it.
      const results = await Promise.allSettled([
        registry.setAlias('cas_model', 'champion', a.version, { expectedVersion: b.version }),
        registry.setAlias('cas_model', 'champion', c.version, { expectedVersion: b.version }),
      ]);
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      const lost = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      expect((lost?.reason as FtiError).type).toBe(FailureType.Conflict);
      expect(await registry.aliasHistory('cas_model', 'champion')).toHaveLength(3);
    });
  });

  describe('two concurrent candidates and an incumbent, on the same rows', () => {
    const model = 'delay_promo';
    const auc: Record<number, number> = {};
    let validationRows = 0;
    let decisions: PromotionDecision[];

    beforeAll(async () => {
      // Three versions of differing quality on one training dataset (so one validation split):
      // untrained weights, two epochs, eight epochs of a wider network.
      await registerModelVersion(db.knex, backend.tf, { model, view: flightDelays, ...day, seed: 11, epochs: 0 });
      await registerModelVersion(db.knex, backend.tf, { model, view: flightDelays, ...day, seed: 12, epochs: 2 });
      await registerModelVersion(db.knex, backend.tf, { model, view: flightDelays, ...day, seed: 13, epochs: 8, hiddenUnits: [16] });
      for (const v of [1, 2, 3]) {
        const measured = await validationAuc(model, v);
        auc[v] = measured.auc;
        validationRows = measured.rows;
      }
      // The untrained incumbent is the worst; the stored (test) metrics say the opposite.
      expect(auc[1]).toBeLessThan(Math.min(auc[2] as number, auc[3] as number));
      await storeMetrics(model, 1, { auc: 0.99 });
      await storeMetrics(model, 2, { auc: 0.01 });
      await storeMetrics(model, 3, { auc: 0.02 });
      await registry.setAlias(model, 'champion', 1);
    });

    it('afterwards the best one holds the alias; the loser of the race compared again with the new holder', async () => {
      const racing = activities(new RacingRegistry({ knex: db.knex }));
      decisions = await Promise.all([promote(racing, model, 2), promote(racing, model, 3)]);
      const best = auc[2] as number > (auc[3] as number) ? 2 : 3;
      const other = best === 2 ? 3 : 2;
      expect((await registry.getAlias(model, 'champion')).version).toBe(best);

      // Both read version 1 as the holder; one moved it first, the other's compare-and-set failed.
      expect(decisions.map((d) => d.attempts).sort()).toEqual([1, 2]);
      const first = decisions.find((d) => d.attempts === 1) as PromotionDecision;
      const second = decisions.find((d) => d.attempts === 2) as PromotionDecision;
      expect(first).toMatchObject({ promoted: true, incumbent: { version: 1 } });
      expect(second.incumbent?.version).toBe(first.candidate.version);
      expect(second.promoted).toBe(second.candidate.version === best);
      expect(second.reason).toMatch(/the alias moved while this decided/);
      const history = await registry.aliasHistory(model, 'champion');
      expect(history.at(-1)?.toVersion).toBe(best);
      expect(history.map((m) => m.toVersion)).toEqual(first.candidate.version === best ? [1, best] : [1, other, best]);

      for (const d of decisions) {
        // The test split only reports: the stored (lying) metrics are in the decision, and ignored.
        expect(d.candidate.value).toBe(d.candidate.version === 2 ? 0.01 : 0.02);
        // Decided on validation, both versions on the same rows, each value recomputed.
        const v = d.validation;
        expect(v).toMatchObject({ split: 'validation', rows: validationRows, rowsLeftOut: 0 });
        expect(v?.candidate.value).toBeCloseTo(auc[d.candidate.version] as number, 6);
        expect(v?.incumbent).toMatchObject({ version: d.incumbent?.version, through: 'dataset', featureView: { name: 'flight_delays', version: 3 } });
        expect(v?.incumbent?.value).toBeCloseTo(auc[d.incumbent?.version ?? -1] as number, 6);
        expect(v?.candidate.metrics).toMatchObject({ auc: v?.candidate.value, count: validationRows });
        expect(v?.incumbent?.metrics).toHaveProperty('logLoss');
      }
      // Against version 1, whose stored auc (0.99) would have won every comparison:
      expect(first.incumbent?.value).toBe(0.99);
      expect(first.validation?.incumbent?.value).toBeCloseTo(auc[1] as number, 6);
      expect(first.reason).toMatch(/^validation auc \d\.\d{4} beats version 1's \d\.\d{4} on the same \d+ validation rows of dataset \d+ by more than 0$/);
      console.info('[promotion] validation AUC on the same %d rows: v1 %s, v2 %s, v3 %s; decisions: %s', validationRows, auc[1]?.toFixed(4), auc[2]?.toFixed(4), auc[3]?.toFixed(4), JSON.stringify(decisions, null, 1));
    });

    it('a retry after the alias moved to the candidate returns promoted; a worse candidate does not move it back', async () => {
      const best = (await registry.getAlias(model, 'champion')).version;
      const again = await promote(activities(), model, best);
      expect(again).toMatchObject({ promoted: true, attempts: 1, validation: null, reason: `champion already points at version ${best}` });

      const worse = await promote(activities(), model, 1);
      expect(worse.promoted).toBe(false);
      expect(worse.reason).toMatch(new RegExp(`does not beat version ${best}'s`));
      expect(worse.validation?.candidate.value).toBeCloseTo(auc[1] as number, 6);
      expect((await registry.getAlias(model, 'champion')).version).toBe(best);
    });
  });

  it('an incumbent trained on another feature view is scored through its own view, for the same spine rows', async () => {
    const model = 'delay_views';
    const lite = await registerModelVersion(db.knex, backend.tf, { model, view: liteView, ...day, seed: 21, epochs: 2 });
    await registry.setAlias(model, 'champion', lite.version);
    const full = await registerModelVersion(db.knex, backend.tf, { model, view: flightDelays, ...day, seed: 22, epochs: 2 });
    const candidateDataset = await training.dataset(full.trainingDatasetId);

    const decision = await promote(activities(), model, full.version);
    const v = decision.validation;
    expect(v?.incumbent).toMatchObject({ version: lite.version, through: 'view', featureView: { name: 'flight_delays_lite', version: 1 } });
    // As of the candidate dataset's commits: every group of the lite view is one it read.
    expect([...(v?.incumbent?.commits ?? [])].sort((a, b) => a.featureGroup.localeCompare(b.featureGroup))).toEqual(candidateDataset.commits);
    // The same rows: the lite view's own dataset over the same window has the same validation split.
    const liteOwn = await validationAuc(model, lite.version);
    const fullOwn = await validationAuc(model, full.version);
    expect(v?.rows).toBe(candidateDataset.rowCounts.validation);
    expect(v?.rows).toBe(liteOwn.rows);
    expect(v?.incumbent?.value).toBeCloseTo(liteOwn.auc, 6);
    expect(v?.candidate.value).toBeCloseTo(fullOwn.auc, 6);
    expect(decision.promoted).toBe(fullOwn.auc > liteOwn.auc);
    expect((await registry.getAlias(model, 'champion')).version).toBe(decision.promoted ? full.version : lite.version);
    console.info('[promotion] other view: lite v%d %s (through its view), full v%d %s on %d rows; promoted %s', lite.version, liteOwn.auc.toFixed(4), full.version, fullOwn.auc.toFixed(4), v?.rows, decision.promoted);
  });

  it('a holder that cannot be judged on the candidate\'s rows keeps the alias, and the decision says why', async () => {
    const model = 'delay_refuse';
    const minutesLate = defineFeatureView({ name: 'flight_minutes_late', version: 1, spine: flights, label: 'delay', features: ['flights.distance', { feature: 'flights.hour', encoding: 'cyclical', period: 24 }] });
    const regressor = await registerModelVersion(db.knex, backend.tf, { model, view: minutesLate, ...day, seed: 31, epochs: 0 });
    await registry.setAlias(model, 'champion', regressor.version);
    const classifier = await registerModelVersion(db.knex, backend.tf, { model, view: flightDelays, ...day, seed: 32, epochs: 0 });
    const decision = await promote(activities(), model, classifier.version);
    expect(decision).toMatchObject({ promoted: false, validation: null, incumbent: { version: regressor.version } });
    expect(decision.reason).toMatch(/version 1 \(holding the alias\) cannot be scored on the validation rows of dataset \d+: it is a regressor, the candidate a binary_classifier; the alias stays/);
    expect((await registry.getAlias(model, 'champion')).version).toBe(regressor.version);
  });

  describe('code version on model versions', () => {
    let trainingDatasetId: number;
    let run = 0;

    beforeAll(async () => {
      trainingDatasetId = (await training.createDataset(await features.registerView(flightDelays), { idempotencyKey: 'code-version', start: new Date(day.start), end: new Date(day.end) })).id;
    });

    /** A trained model waiting in a run's checkpoint, as the GPU pool leaves it; then the register activity. */
    async function register(codeVersion: () => string | null, trainerCodeVersion?: string): Promise<RegisteredModel> {
      const dataset = await training.dataset(trainingDatasetId);
      const signature = fitSignature(featureSpecs(flightDelays), dataset.statistics, { name: 'delayed', kind: 'binary_classifier' });
      const tfModel = buildModel(backend.tf, { hiddenUnits: [4], seed: 1 }, createEncoder(signature).width, 'binary_classifier');
      const runKey = `code-version/${++run}`;
      try {
        await training.saveCheckpoint({ runKey, checkpoint: await checkpointOf(backend.tf, tfModel, 1), signature, history: [] });
      } finally {
        disposeModel(tfModel);
      }
      const trained: TrainResult = { runKey, epochs: 1, resumedFromEpoch: 0, finalLoss: 0.5, samplesPerSecond: 1, trainingSeconds: 1, tfjsBackend: 'wasm', device: 'cpu', ...(trainerCodeVersion ? { codeVersion: trainerCodeVersion } : {}) };
      const acts = activities(registry, codeVersion);
      return new MockActivityEnvironment().run<[Parameters<typeof acts.registerModel>[0]], RegisteredModel, typeof acts.registerModel>(acts.registerModel, {
        runKey,
        model: 'delay_code',
        trainingDatasetId,
        metrics: {},
        training: trained,
      });
    }

    async function withEnv<T>(value: string | undefined, fn: () => Promise<T>): Promise<T> {
      const before = process.env.FTI_ENV;
      if (value === undefined) delete process.env.FTI_ENV;
      else process.env.FTI_ENV = value;
      try {
        return await fn();
      } finally {
        if (before === undefined) delete process.env.FTI_ENV;
        else process.env.FTI_ENV = before;
      }
    }

    it('in production, a version without a code version is refused (not retried); in development it is registered', async () => {
      const refused = await withEnv('production', () => register(() => null)).then(
        () => expect.fail('expected the registration to be refused'),
        (err: unknown) => err as { type?: string; nonRetryable?: boolean; message: string },
      );
      expect(refused).toMatchObject({ type: FailureType.InvalidInput, nonRetryable: true });
      expect(refused.message).toMatch(/refusing to register a model version without a code version \(FTI_ENV=production\): set FTI_CODE_VERSION/);
      expect((await registry.listModels()).map((m) => m.name)).not.toContain('delay_code');

      const dev = await withEnv(undefined, () => register(() => null));
      expect(dev).toMatchObject({ model: 'delay_code', version: 1, created: true });
      expect((await registry.getModelVersion('delay_code', 1)).lineage.codeVersion).toBeUndefined();

      // The trainer's code version is the one recorded; this worker's when the trainer reported none.
      const trained = await withEnv('production', () => register(() => null, 'abc1234'));
      expect((await registry.getModelVersion('delay_code', trained.version)).lineage.codeVersion).toBe('abc1234');
      const own = await withEnv('production', () => register(() => 'def5678'));
      expect((await registry.getModelVersion('delay_code', own.version)).lineage.codeVersion).toBe('def5678');
    });

    it('development and production are the only modes', () => {
      expect(deploymentMode({})).toBe('development');
      expect(deploymentMode({ FTI_ENV: 'development' })).toBe('development');
      expect(deploymentMode({ FTI_ENV: 'production' })).toBe('production');
      expect(() => deploymentMode({ FTI_ENV: 'prod' })).toThrow(/FTI_ENV must be 'development' or 'production'/);
    });
  });
});
