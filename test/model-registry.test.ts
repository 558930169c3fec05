import type { Tensor } from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FailureType, FtiError } from '../core/errors.ts';
import { artifactFromModel, artifactSha256, artifactSize, type ModelArtifact } from '../ml/artifact.ts';
import { loadBackend, type Tf } from '../ml/backend.ts';
import type { ModelSignature } from '../ml/signature.ts';
import { ModelRegistry, listenForAliasChanges, type AliasNotification, type ModelLineage, type RegisterModelVersionInput } from '../registry/models/index.ts';
import { createTestDb, type TestDb } from './helpers/services.ts';

const signature: ModelSignature = {
  inputs: [
    { name: 'distance', dtype: 'float', encoding: { kind: 'standardize', mean: 812.5, std: 410.2, fill: 812.5, missingIndicator: false } },
    { name: 'origin', dtype: 'string', encoding: { kind: 'one_hot', categories: ['ATL', 'ORD'] } },
    { name: 'hour', dtype: 'int', encoding: { kind: 'cyclical', period: 24 } },
  ],
  output: { name: 'delayed', kind: 'binary_classifier' },
};

function lineage(overrides: Partial<ModelLineage> = {}): ModelLineage {
  return {
    featureView: { name: 'flight_delays', version: 1 },
    trainingDatasetId: 7,
    featureGroupCommits: [
      { featureGroup: 'airport_delays', version: 1, commitId: 42 },
      { featureGroup: 'routes', version: 2, commitId: 43 },
    ],
    tfjsBackend: 'cpu',
    trainedAt: '2026-11-23T10:00:00.000Z',
    ...overrides,
  };
}

/** The exact error a registry call rejects with. */
async function failure(promise: Promise<unknown>): Promise<FtiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof FtiError)) throw new Error(`expected an FtiError, got ${String(err)}`);
  return err;
}

describe('model registry against real Postgres', () => {
  let db: TestDb;
  let registry: ModelRegistry;
  let tf: Tf;
  let artifact: ModelArtifact;
  let sample: number[][];

  const input = (name: string, extra: Partial<RegisterModelVersionInput> = {}): RegisterModelVersionInput => ({
    name,
    artifact,
    signature,
    metrics: { auc: 0.71, loss: 0.43 },
    params: { epochs: 5, hidden: [8, 4], optimizer: 'adam' },
    lineage: lineage(),
    ...extra,
  });

  /** A model with versions 1..n. */
  async function modelWithVersions(name: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) await registry.registerModelVersion(input(name));
  }

  beforeAll(async () => {
    db = await createTestDb('models');
    registry = new ModelRegistry({ knex: db.knex });
    tf = (await loadBackend('cpu', 'cpu')).tf;
    const model = tf.sequential({
      layers: [tf.layers.dense({ inputShape: [5], units: 8, activation: 'relu' }), tf.layers.dense({ units: 4, activation: 'relu' }), tf.layers.dense({ units: 1, activation: 'sigmoid' })],
    });
    model.compile({ optimizer: 'adam', loss: 'binaryCrossentropy' });
    artifact = await artifactFromModel(tf, model);
    sample = Array.from({ length: 16 }, (_, i) => Array.from({ length: 5 }, (_, j) => Math.sin(i * 5 + j)));
    model.dispose();
  });

  afterAll(async () => {
    await db?.close();
  });

  describe('versions and artifacts', () => {
    it('registers version 1 with its signature, metrics, params, lineage and artifact hash, and reads it back', async () => {
      const { version, created } = await registry.registerModelVersion(input('roundtrip', { description: 'first cut' }));
      expect(created).toBe(true);
      expect(version).toMatchObject({
        model: 'roundtrip',
        version: 1,
        description: 'first cut',
        signature,
        metrics: { auc: 0.71, loss: 0.43 },
        params: { epochs: 5, hidden: [8, 4], optimizer: 'adam' },
        lineage: lineage(),
        artifact: { format: 'tfjs-layers-model', sha256: artifactSha256(artifact), sizeBytes: artifactSize(artifact) },
        aliases: [],
      });
      expect(await registry.getModelVersion('roundtrip', 1)).toEqual(version);
    });

    it('a tfjs model saved to the registry and loaded back through tf.loadLayersModel(handler) predicts identically', async () => {
      const original = await tf.loadLayersModel(tf.io.fromMemory({ modelTopology: artifact.modelTopology, weightSpecs: artifact.weightSpecs, weightData: copy(artifact.weightData) }));
      const { version } = await registry.registerModelVersion(input('roundtrip_tf'));
      const loaded = await tf.loadLayersModel(registry.handler('roundtrip_tf', version.version));
      const x = tf.tensor2d(sample);
      const expected = (original.predict(x) as Tensor).arraySync();
      const actual = (loaded.predict(x) as Tensor).arraySync();
      expect(actual).toEqual(expected);
      const originalWeights = original.getWeights().map((w) => w.arraySync());
      expect(loaded.getWeights().map((w) => w.arraySync())).toEqual(originalWeights);
      x.dispose();
      original.dispose();
      loaded.dispose();
    });

    it('loadArtifact returns the exact bytes and says which version an alias resolved to', async () => {
      await modelWithVersions('load_by_alias', 2);
      await registry.setAlias('load_by_alias', 'champion', 1);
      const loaded = await registry.loadArtifact('load_by_alias', 'champion');
      expect(loaded).toMatchObject({ model: 'load_by_alias', version: 1, sha256: artifactSha256(artifact), sizeBytes: artifactSize(artifact) });
      expect(Buffer.from(loaded.weightData).equals(Buffer.from(artifact.weightData))).toBe(true);
      expect(loaded.modelTopology).toEqual(artifact.modelTopology);
      expect(loaded.trainingConfig).toEqual(artifact.trainingConfig);
      expect((await registry.loadArtifact('load_by_alias', 'latest')).version).toBe(2);
    });

    it('20 concurrent registrations of one model yield versions 1..20 exactly', async () => {
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => registry.registerModelVersion(input('concurrent', { description: `run ${i}` }))));
      expect(results.every((r) => r.created)).toBe(true);
      expect(results.map((r) => r.version.version).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      const listed = await registry.listModelVersions('concurrent');
      expect(listed.map((v) => v.version)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      expect(new Set(listed.map((v) => v.description)).size).toBe(20);
    });

    it('a retried registration (same idempotency key) returns the same version instead of making a new one, even when the retries race', async () => {
      const first = await registry.registerModelVersion(input('retried', { idempotencyKey: 'wf-1/train' }));
      const retries = await Promise.all(Array.from({ length: 5 }, () => registry.registerModelVersion(input('retried', { idempotencyKey: 'wf-1/train' }))));
      expect(first.created).toBe(true);
      for (const r of retries) {
        expect(r.created).toBe(false);
        expect(r.version).toEqual(first.version);
      }
      const other = await registry.registerModelVersion(input('retried', { idempotencyKey: 'wf-2/train' }));
      expect(other).toMatchObject({ created: true, version: { version: 2 } });
      expect((await registry.listModelVersions('retried')).map((v) => v.version)).toEqual([1, 2]);
    });

    it('without an idempotency key every registration makes a new version, even from one workflow run', async () => {
      const run = lineage({ workflowId: 'training-flights', runId: 'run-a' });
      const a = await registry.registerModelVersion(input('no_key', { lineage: run }));
      const b = await registry.registerModelVersion(input('no_key', { lineage: run }));
      expect([a.created, b.created]).toEqual([true, true]);
      expect([a.version.version, b.version.version]).toEqual([1, 2]);
      expect(a.version.idempotencyKey).toBeNull();
    });

    it('a corrupted artifact fails to load with an IntegrityError that names the model, version and both hashes', async () => {
      const { version } = await registry.registerModelVersion(input('corrupted'));
      await db.knex.raw(
        `update model_artifacts set weight_data = set_byte(weight_data, 10, (get_byte(weight_data, 10) + 1) % 256)
         where model_version_id = (select v.id from model_versions v join models m on m.id = v.model_id where m.name = ? and v.version = ?)`,
        ['corrupted', version.version],
      );
      const err = await failure(registry.loadArtifact('corrupted', 1));
      expect(err.type).toBe(FailureType.IntegrityError);
      expect(err.message).toContain('corrupted@1');
      expect(err.message).toContain('failed its integrity check');
      expect(err.message).toContain(artifactSha256(artifact));
      // Through tfjs too: the handler fails closed, no model is built.
      const viaTf = await tf.loadLayersModel(registry.handler('corrupted', 1)).catch((e: unknown) => e);
      expect(viaTf).toBeInstanceOf(FtiError);
      expect((viaTf as FtiError).type).toBe(FailureType.IntegrityError);
    });

    it('a tampered topology fails the integrity check too', async () => {
      await registry.registerModelVersion(input('tampered'));
      await db.knex.raw(
        `update model_artifacts set model_topology = replace(model_topology::text, '"relu"', '"linear"')::json
         where model_version_id = (select v.id from model_versions v join models m on m.id = v.model_id where m.name = 'tampered')`,
      );
      expect((await failure(registry.loadArtifact('tampered', 'latest'))).type).toBe(FailureType.IntegrityError);
    });

    it('resolves a version by number, alias and latest; unknown references are NotFound and say what exists', async () => {
      await modelWithVersions('resolving', 3);
      await registry.setAlias('resolving', 'champion', 2);
      expect((await registry.resolveModelVersion('resolving', 3)).version).toBe(3);
      expect((await registry.resolveModelVersion('resolving', '1')).version).toBe(1);
      expect((await registry.resolveModelVersion('resolving', 'latest')).version).toBe(3);
      const champion = await registry.resolveModelVersion('resolving', 'champion');
      expect(champion).toMatchObject({ version: 2, aliases: ['champion'] });

      const noVersion = await failure(registry.resolveModelVersion('resolving', 9));
      expect(noVersion).toMatchObject({ type: FailureType.NotFound, message: "model 'resolving' has no version 9 (versions: 1, 2, 3)" });
      const noAlias = await failure(registry.resolveModelVersion('resolving', 'challenger'));
      expect(noAlias).toMatchObject({ type: FailureType.NotFound, message: "model 'resolving' has no alias 'challenger' (aliases: champion)" });
      const noModel = await failure(registry.resolveModelVersion('nope', 'latest'));
      expect(noModel).toMatchObject({ type: FailureType.NotFound, message: "model 'nope' is not registered" });
      expect((await failure(registry.getModelVersion('nope', 1))).type).toBe(FailureType.NotFound);
    });

    it('rejects bad input with InvalidInput before touching the database', async () => {
      const cases: Array<[RegisterModelVersionInput, string]> = [
        [input('Bad-Name'), 'name'],
        [input('bad_input', { signature: { ...signature, inputs: [] } }), 'signature.inputs'],
        [input('bad_input', { metrics: { auc: Number.NaN } }), 'metrics.auc'],
        [input('bad_input', { lineage: { ...lineage(), trainedAt: 'yesterday' } }), 'lineage.trainedAt'],
        [input('bad_input', { lineage: { ...lineage(), featureGroupCommits: [{ featureGroup: 'g', version: 1, commitId: -1 }] } }), 'lineage.featureGroupCommits.0.commitId'],
        [input('bad_input', { artifact: { ...artifact, weightData: artifact.weightData.subarray(4) } }), 'weight specs describe'],
      ];
      for (const [bad, mentions] of cases) {
        const err = await failure(registry.registerModelVersion(bad));
        expect(err.type).toBe(FailureType.InvalidInput);
        expect(err.message).toContain(mentions);
      }
      expect((await failure(registry.setAlias('bad_input', 'latest', 1))).message).toContain("'latest' is reserved");
      expect((await registry.listModels()).map((m) => m.name)).not.toContain('bad_input');
    });

    it('bestVersion picks the highest metric (lowest with mode min), ties going to the newer version', async () => {
      for (const [auc, loss] of [
        [0.7, 0.5],
        [0.8, 0.3],
        [0.8, 0.4],
        [0.6, 0.2],
      ] as const) {
        await registry.registerModelVersion(input('best', { metrics: { auc, loss } }));
      }
      await registry.registerModelVersion(input('best', { metrics: { rmse: 1 } }));
      expect((await registry.bestVersion('best', 'auc'))?.version).toBe(3);
      expect((await registry.bestVersion('best', 'loss', { mode: 'min' }))?.version).toBe(4);
      expect(await registry.bestVersion('best', 'f1')).toBeUndefined();
      expect((await failure(registry.bestVersion('nope', 'auc'))).type).toBe(FailureType.NotFound);
    });

    it('deleting a version an alias points at is refused; once the alias moves it can be deleted, and its number is never reused', async () => {
      await modelWithVersions('deleting', 3);
      await registry.setAlias('deleting', 'champion', 3);
      await registry.setAlias('deleting', 'challenger', 3);
      const refused = await failure(registry.deleteModelVersion('deleting', 3));
      expect(refused.type).toBe(FailureType.Conflict);
      expect(refused.message).toBe('cannot delete deleting@3: aliases challenger, champion point at it; move them to another version first');
      expect((await registry.getModelVersion('deleting', 3)).version).toBe(3);

      // The foreign key refuses it too, for anyone going around the registry.
      const raw = await db.knex.raw('delete from model_versions where version = 3 and model_id = (select id from models where name = ?)', ['deleting']).catch((e: unknown) => e);
      expect(raw).toMatchObject({ code: '23503' });

      await registry.setAlias('deleting', 'champion', 2);
      await registry.setAlias('deleting', 'challenger', 1);
      await registry.deleteModelVersion('deleting', 3);
      expect((await failure(registry.getModelVersion('deleting', 3))).type).toBe(FailureType.NotFound);
      expect((await registry.registerModelVersion(input('deleting'))).version.version).toBe(4);
      expect((await failure(registry.deleteModelVersion('deleting', 3))).type).toBe(FailureType.NotFound);
    });

    it('lists models with their latest version, version count and aliases', async () => {
      await modelWithVersions('listed', 2);
      await registry.setAlias('listed', 'champion', 1);
      const listed = (await registry.listModels()).find((m) => m.name === 'listed');
      expect(listed).toMatchObject({ name: 'listed', latestVersion: 2, versionCount: 2, aliases: { champion: 1 } });
    });
  });

  describe('lineage', () => {
    it('versionsUsingCommit finds every model version whose training read a feature group commit', async () => {
      const commit = { featureGroup: 'lineage_group', version: 3, commitId: 9001 };
      await registry.registerModelVersion(input('lineage_a', { lineage: lineage({ featureGroupCommits: [commit] }) }));
      await registry.registerModelVersion(input('lineage_a', { lineage: lineage({ featureGroupCommits: [{ ...commit, commitId: 9002 }] }) }));
      await registry.registerModelVersion(input('lineage_b', { lineage: lineage({ featureGroupCommits: [commit, commit, { featureGroup: 'other', version: 1, commitId: 1 }] }) }));
      const using = await registry.versionsUsingCommit(commit);
      expect(using.map((v) => `${v.model}@${v.version}`)).toEqual(['lineage_a@1', 'lineage_b@1']);
      expect(await registry.versionsUsingCommit({ ...commit, version: 4 })).toEqual([]);
    });

    it('lineageOf says what data, workflow and code made a version', async () => {
      const full = lineage({
        workflowId: 'training-1',
        runId: 'r1',
        codeVersion: 'abc1234',
        trainingSeconds: 12.5,
        tfjsBackend: 'wasm',
        // Read back in the order handed in, not sorted.
        featureGroupCommits: [
          { featureGroup: 'routes', version: 2, commitId: 43 },
          { featureGroup: 'airport_delays', version: 1, commitId: 42 },
        ],
      });
      await registry.registerModelVersion(input('lineage_full', { lineage: full }));
      expect(await registry.lineageOf('lineage_full', 1)).toEqual(full);
      const minimal: ModelLineage = { featureGroupCommits: [], tfjsBackend: 'cpu', trainedAt: '2026-11-23T11:00:00.000Z' };
      await registry.registerModelVersion(input('lineage_min', { lineage: minimal }));
      expect(await registry.lineageOf('lineage_min', 'latest')).toEqual(minimal);
    });
  });

  describe('aliases', () => {
    it('setAlias moves the alias and records every move; pointing it where it already points records nothing', async () => {
      await modelWithVersions('promoting', 3);
      const first = await registry.setAlias('promoting', 'champion', 1, { actor: 'ana', reason: 'first model' });
      expect(first).toMatchObject({ kind: 'set', fromVersion: null, toVersion: 1, changed: true });
      const second = await registry.setAlias('promoting', 'champion', 3);
      expect(second).toMatchObject({ fromVersion: 1, toVersion: 3, changed: true });
      expect(await registry.setAlias('promoting', 'champion', 3)).toMatchObject({ fromVersion: 3, toVersion: 3, changed: false });
      expect(await registry.getAlias('promoting', 'champion')).toMatchObject({ model: 'promoting', alias: 'champion', version: 3 });
      const history = await registry.aliasHistory('promoting', 'champion');
      expect(history.map((h) => [h.kind, h.fromVersion, h.toVersion, h.actor, h.reason])).toEqual([
        ['set', null, 1, 'ana', 'first model'],
        ['set', 1, 3, null, null],
      ]);
      expect((await failure(registry.setAlias('promoting', 'champion', 7))).message).toBe("model 'promoting' has no version 7 (versions: 1, 2, 3)");
      expect((await failure(registry.getAlias('promoting', 'staging'))).type).toBe(FailureType.NotFound);
      expect(await registry.aliasHistory('promoting', 'staging')).toEqual([]);
    });

    it('rollback undoes moves newest first, like an undo stack, and refuses when nothing is left to undo', async () => {
      await modelWithVersions('rolling', 4);
      for (const v of [1, 2, 3]) await registry.setAlias('rolling', 'champion', v);
      expect(await registry.rollback('rolling', 'champion', { reason: 'v3 regressed' })).toMatchObject({ kind: 'rollback', fromVersion: 3, toVersion: 2 });
      expect(await registry.rollback('rolling', 'champion')).toMatchObject({ fromVersion: 2, toVersion: 1 });
      const exhausted = await failure(registry.rollback('rolling', 'champion'));
      expect(exhausted.type).toBe(FailureType.Conflict);
      expect(exhausted.message).toBe('nothing to roll back: rolling@champion was created pointing at version 1 and has no earlier version to go back to');

      // A new move goes on the stack; undoing it returns to where the alias was.
      await registry.setAlias('rolling', 'champion', 4);
      expect(await registry.rollback('rolling', 'champion')).toMatchObject({ fromVersion: 4, toVersion: 1 });
      expect((await registry.getAlias('rolling', 'champion')).version).toBe(1);

      const history = await registry.aliasHistory('rolling', 'champion');
      expect(history.map((h) => `${h.kind} ${h.fromVersion ?? '-'}->${h.toVersion}`)).toEqual(['set -->1', 'set 1->2', 'set 2->3', 'rollback 3->2', 'rollback 2->1', 'set 1->4', 'rollback 4->1']);
      expect(history[3]?.undoesId).toBe(history[2]?.id);
      expect(history[4]?.undoesId).toBe(history[1]?.id);
      expect(history[6]?.undoesId).toBe(history[5]?.id);
      expect(history[3]?.reason).toBe('v3 regressed');

      expect((await failure(registry.rollback('rolling', 'staging'))).type).toBe(FailureType.NotFound);
    });

    it('rollback refuses to go back to a version that has been deleted', async () => {
      await modelWithVersions('rollback_deleted', 2);
      await registry.setAlias('rollback_deleted', 'champion', 1);
      await registry.setAlias('rollback_deleted', 'champion', 2);
      await registry.deleteModelVersion('rollback_deleted', 1);
      const err = await failure(registry.rollback('rollback_deleted', 'champion'));
      expect(err).toMatchObject({ type: FailureType.Conflict, message: 'cannot roll back rollback_deleted@champion to version 1: that version has been deleted' });
      expect((await registry.getAlias('rollback_deleted', 'champion')).version).toBe(2);
    });

    it('aliasAt answers which version was champion at time T', async () => {
      await modelWithVersions('timeline', 3);
      const before = await dbNow(db);
      await registry.setAlias('timeline', 'champion', 1);
      const t1 = await dbNow(db);
      await registry.setAlias('timeline', 'champion', 2);
      const t2 = await dbNow(db);
      await registry.rollback('timeline', 'champion');
      const t3 = await dbNow(db);
      expect(await registry.aliasAt('timeline', 'champion', before)).toBeUndefined();
      expect(await registry.aliasAt('timeline', 'champion', t1)).toBe(1);
      expect(await registry.aliasAt('timeline', 'champion', t2)).toBe(2);
      expect(await registry.aliasAt('timeline', 'champion', t3)).toBe(1);
      const history = await registry.aliasHistory('timeline', 'champion');
      for (const h of history) expect(await registry.aliasAt('timeline', 'champion', h.at)).toBe(h.toVersion);
    });

    it('concurrent promotes and rollbacks leave one consistent history and the alias where the history says', async () => {
      await modelWithVersions('racing', 5);
      await registry.setAlias('racing', 'champion', 1);
      const outcomes = await Promise.all(
        Array.from({ length: 30 }, (_, i) =>
          (i % 3 === 2 ? registry.rollback('racing', 'champion') : registry.setAlias('racing', 'champion', (i % 5) + 1)).then(
            (change) => change.changed,
            (err: unknown) => {
              // A rollback with nothing left to undo is the only acceptable failure.
              if (err instanceof FtiError && err.type === FailureType.Conflict) return false;
              throw err;
            },
          ),
        ),
      );
      const history = await registry.aliasHistory('racing', 'champion');
      expect(history.length).toBe(1 + outcomes.filter(Boolean).length);
      for (let i = 1; i < history.length; i++) {
        const [previous, move] = [history[i - 1], history[i]];
        expect(move?.fromVersion).toBe(previous?.toVersion);
        expect(move?.at.getTime()).toBeGreaterThanOrEqual(previous?.at.getTime() ?? Infinity);
      }
      // Every rollback returned the alias to where the move it undid had found it.
      const byId = new Map(history.map((h) => [h.id, h]));
      for (const r of history.filter((h) => h.kind === 'rollback')) {
        const undone = byId.get(r.undoesId ?? -1);
        expect(undone?.kind).toBe('set');
        expect(r.toVersion).toBe(undone?.fromVersion);
      }
      expect((await registry.getAlias('racing', 'champion')).version).toBe(history.at(-1)?.toVersion);
    });

    it('alias moves are announced with NOTIFY when they commit, and only to listeners of the same schema', async () => {
      await modelWithVersions('announced', 2);
      const heard: AliasNotification[] = [];
      const other: AliasNotification[] = [];
      const subscription = await listenForAliasChanges(db.url, db.schema, (n) => heard.push(n));
      const elsewhere = await listenForAliasChanges(db.url, 'some_other_schema', (n) => other.push(n));
      try {
        // A move inside a transaction that rolls back is never announced.
        await db.knex
          .transaction(async (trx) => {
            await new ModelRegistry({ knex: trx }).setAlias('announced', 'champion', 2);
            throw new Error('abort');
          })
          .catch(() => undefined);
        await registry.setAlias('announced', 'champion', 1);
        await registry.setAlias('announced', 'champion', 2);
        await registry.rollback('announced', 'champion');
        await waitUntil(() => heard.length >= 3);
        expect(heard).toEqual([
          { schema: db.schema, model: 'announced', alias: 'champion', version: 1 },
          { schema: db.schema, model: 'announced', alias: 'champion', version: 2 },
          { schema: db.schema, model: 'announced', alias: 'champion', version: 1 },
        ]);
        expect(other).toEqual([]);
      } finally {
        await subscription.close();
        await elsewhere.close();
      }
    });

    it('the alias history is append-only: the database refuses to rewrite it', async () => {
      await modelWithVersions('audited', 1);
      await registry.setAlias('audited', 'champion', 1);
      const update = await db.knex('model_alias_history').update({ to_version: 99 }).catch((e: unknown) => e);
      expect(String(update)).toContain('model_alias_history is append-only');
      const del = await db.knex('model_alias_history').del().catch((e: unknown) => e);
      expect(String(del)).toContain('model_alias_history is append-only');
    });
  });
});

function copy(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

/**
 * Postgres's clock (history times are taken there), read a few milliseconds after the
 * previous move so the millisecond-resolution Date is past it.
 */
async function dbNow(db: TestDb): Promise<Date> {
  await new Promise((r) => setTimeout(r, 3));
  const { rows } = (await db.knex.raw('select clock_timestamp() as now')) as { rows: Array<{ now: Date }> };
  const now = rows[0]?.now;
  if (!now) throw new Error('no clock_timestamp');
  await new Promise((r) => setTimeout(r, 3));
  return now;
}

async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for notifications');
    await new Promise((r) => setTimeout(r, 20));
  }
}
