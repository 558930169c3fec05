/**
 * Online feature vectors (issue #12): POST /v1/features/{view}[@version] answers, for a
 * batch of entity keys, the view's features as the online lookup hands them to the
 * scorer and, with `encodedFor`, the model input a version builds from them. Real
 * HTTP against a real Postgres filled by the real feature pipeline
 * (test/helpers/serving.ts); the server connects as the serving role, as `fti serve`
 * does.
 *
 * "The same code path" is shown from the outside: the raw values equal what the
 * online store holds (read through the feature store, not the server's lookup), the
 * encoded vector equals the champion's encoder applied to those values, and the model
 * loaded from the registry, fed that vector, gives the predict route's score.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airportDelays, flightDelays, flights } from '../examples/flights/definitions.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { defineFeatureView, type FeatureViewDefinition } from '../features/views.ts';
import { modelFromArtifact } from '../ml/artifact.ts';
import { createEncoder } from '../ml/encoding.ts';
import { predictBatch } from '../ml/predict.ts';
import { FeatureStore, groupTables } from '../registry/feature-store/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { buildServer, type PredictionServer, type ServerOptions } from '../serving/server.ts';
import { registerModelVersion } from './helpers/models.ts';
import { createServingStore, postFeatures, postPredict, SERVING_HISTORY, SERVING_TOMORROW, type ServingStore } from './helpers/serving.ts';

/** A second view over the same groups, with fewer features: a model trained on it is not fed flight_delays. */
const lite = defineFeatureView({
  name: 'delays_lite',
  version: 1,
  spine: flights,
  label: 'delayed',
  joins: [{ group: airportDelays, on: { airport: 'origin' } }],
  features: ['flights.distance', { feature: 'flights.hour', encoding: 'cyclical', period: 24 }, 'airport_delays.delay_mean_2h'],
});
/** A group kept offline only, and a view on it: registered, but not servable online. */
const archive = defineFeatureGroup({
  name: 'flights_archive',
  version: 1,
  entityKeys: ['flight_id'],
  eventTime: 'event_time',
  features: { flight_id: 'int', event_time: 'timestamp', distance: 'float', delayed: 'bool' },
  label: 'delayed',
  source: flights.source,
  online: false,
});
const archived = defineFeatureView({ name: 'archived_flights', version: 1, spine: archive, label: 'delayed', features: ['flights_archive.distance'] });

const project = defineProject({ featureGroups: [flights, airportDelays], featureViews: [flightDelays, lite] });
const MODEL = 'flight_delay';
const UNKNOWN_FLIGHT = 987654321;
const TOKEN = crypto.randomBytes(24).toString('hex');
const MAX_ENTITIES = 20;
/** The view under test and its URL segments (the example's versions move; the test follows them). */
const VIEW = flightDelays.name;
const VIEW_AT = `${flightDelays.name}@${flightDelays.version}`;
const FLIGHTS_ONLINE = groupTables(flights.name, flights.version).online;

type Row = Record<string, unknown>;

describe('online feature vectors: POST /v1/features/{view}', () => {
  let store: ServingStore;
  let server: PredictionServer;
  let base: string;
  let registry: ModelRegistry;
  let view: FeatureViewDefinition;
  /** Tomorrow's flights (online, not trained on), spread over the day and its airports. */
  let flightIds: number[];
  /** What the online store holds for each of flightIds, by view feature name. */
  let expected: Row[];

  const options = (extra: Partial<ServerOptions> = {}): ServerOptions => store.serverOptions(extra);
  /** POST /v1/features/{viewSegment} with the server's token. */
  const features = (viewSegment: string, body: unknown) => postFeatures(base, viewSegment, body, { token: TOKEN });
  const metrics = async () => (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();

  /** The view's features for `keys`, read through the feature store's own online reads (not the server's lookup). */
  const onlineValues = async (def: FeatureViewDefinition, keys: Row[]): Promise<Array<Row | undefined>> => {
    const fs = new FeatureStore({ knex: store.db.knex });
    const spine = await fs.online(await fs.group(def.spine.group, def.spine.version), keys);
    const joined = await Promise.all(
      def.joins.map(async (j) => {
        const found = spine.filter((r): r is NonNullable<typeof r> => r !== undefined);
        const rows = await fs.online(
          await fs.group(j.group, j.version),
          found.map((r) => Object.fromEntries(Object.entries(j.on).map(([key, column]) => [key, r[column]]))),
        );
        return new Map(found.map((r, i) => [r, rows[i]]));
      }),
    );
    return spine.map((s) => {
      if (!s) return undefined;
      return Object.fromEntries(
        def.features.map((f) => {
          if (f.group === def.spine.group) return [f.name, s[f.feature]];
          const i = def.joins.findIndex((j) => j.group === f.group);
          return [f.name, joined[i]?.get(s)?.[f.feature] ?? null];
        }),
      );
    });
  };

  beforeAll(async () => {
    store = await createServingStore('serving_features', project);
    const { knex } = store.db;
    registry = new ModelRegistry({ knex });
    // v1 never holds an alias (so it may not be asked for by number); v2 is the champion.
    for (const seed of [1, 2]) await registerModelVersion(knex, store.backend.tf, { model: MODEL, view: flightDelays, ...SERVING_HISTORY, seed });
    await registry.setAlias(MODEL, 'champion', 2);
    await registerModelVersion(knex, store.backend.tf, { model: 'lite', view: lite, ...SERVING_HISTORY, seed: 3, epochs: 0 });
    await registry.setAlias('lite', 'champion', 1);
    const fs = new FeatureStore({ knex });
    await fs.register(archive);
    await fs.registerView(archived);
    view = (await fs.view(flightDelays.name, flightDelays.version)).definition;

    const tomorrow = await knex(FLIGHTS_ONLINE)
      .where('event_time', '>=', SERVING_TOMORROW.start)
      .andWhere('event_time', '<', SERVING_TOMORROW.end)
      .orderBy('flight_id')
      .pluck<number[]>('flight_id');
    expect(tomorrow.length).toBeGreaterThan(1_000);
    flightIds = Array.from({ length: 12 }, (_, i) => tomorrow[Math.floor((i * tomorrow.length) / 12)] as number);
    expected = (await onlineValues(view, flightIds.map((flight_id) => ({ flight_id })))) as Row[];
    expect(expected.every((r) => r !== undefined)).toBe(true);

    server = await buildServer(options({ tokens: TOKEN, maxEntities: MAX_ENTITIES, preload: [MODEL] }));
    base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await server?.app.close();
    await store?.close();
  });

  it('answers, per entity, exactly what the online store holds for the view, under the view feature names', async () => {
    // The sample is worth comparing: joined features present, values that differ between flights.
    const joined = view.features.filter((f) => f.group !== view.spine.group).map((f) => f.name);
    expect(joined.length).toBeGreaterThan(0);
    expect(expected.some((r) => joined.some((name) => typeof r[name] === 'number'))).toBe(true);
    expect(new Set(expected.map((r) => JSON.stringify(r))).size).toBe(expected.length);

    const keys = flightIds.map((flight_id) => ({ flight_id }));
    const latest = await features(VIEW, { keys });
    expect(latest.status).toBe(200);
    expect(latest.body.featureView).toEqual({ name: VIEW, version: flightDelays.version });
    expect(latest.body.featureNames).toEqual(view.features.map((f) => f.name));
    expect(latest.body).not.toHaveProperty('encodedFor');
    expect(latest.body.vectors).toHaveLength(keys.length);
    latest.body.vectors.forEach((v, i) => {
      expect({ keys: v.keys, status: v.status, features: v.features }).toEqual({ keys: keys[i], status: 'OK', features: expected[i] });
      expect(v).not.toHaveProperty('encoded');
    });

    // The version named explicitly: the same answer.
    const pinned = await features(VIEW_AT, { keys });
    expect(pinned.status).toBe(200);
    expect(pinned.body).toEqual(latest.body);
  });

  it("with encodedFor, each vector is the champion's encoder applied to those values, and the model fed it gives the predict route's score", async () => {
    const keys = flightIds.map((flight_id) => ({ flight_id }));
    const answer = await features(VIEW, { keys, encodedFor: `${MODEL}@champion` });
    expect(answer.status).toBe(200);
    const record = await registry.getModelVersion(MODEL, 2);
    const encoder = createEncoder(record.signature);
    expect(answer.body.encodedFor).toEqual({ model: MODEL, version: 2, ref: 'champion', columns: [...encoder.columns] });

    const x = new Float32Array(keys.length * encoder.width);
    answer.body.vectors.forEach((v, i) => {
      expect(v.status).toBe('OK');
      expect(v.features).toEqual(expected[i]);
      encoder.encodeRow(expected[i] as Row, x, i * encoder.width);
      // Float32 values survive JSON exactly: the vector is the encoder's, not an approximation of it.
      expect(v.encoded).toEqual(Array.from(x.subarray(i * encoder.width, (i + 1) * encoder.width)));
    });
    expect(new Set(answer.body.vectors.map((v) => JSON.stringify(v.encoded))).size).toBe(keys.length);
    // No ref means the champion, as in the predict URL.
    expect((await features(VIEW_AT, { keys, encodedFor: MODEL })).body).toEqual(answer.body);

    // The champion, loaded from the registry on its own, scores the returned vectors as the predict route does.
    const returned = Float32Array.from(answer.body.vectors.flatMap((v) => v.encoded ?? []));
    expect(returned).toHaveLength(keys.length * encoder.width);
    const model = await modelFromArtifact(store.backend.tf, await registry.loadArtifact(MODEL, 2));
    let scores: Float32Array;
    try {
      scores = await predictBatch(store.backend.tf, model, returned, keys.length);
    } finally {
      model.dispose();
    }
    const predicted = await postPredict(base, MODEL, { keys }, { token: TOKEN });
    expect(predicted.status).toBe(200);
    expect(predicted.body.version).toBe(2);
    predicted.body.predictions.forEach((p, i) => {
      expect(p.status).toBe('OK');
      expect(Math.abs((p.score as number) - (scores[i] as number))).toBeLessThan(1e-5);
    });
    expect(new Set(predicted.body.predictions.map((p) => p.score?.toFixed(5))).size).toBeGreaterThan(3);
  });

  it('marks an unknown entity NOT_FOUND in a batch and answers the others; a single unknown entity is a 404', async () => {
    const [a, b] = flightIds as [number, number];
    const keys = [{ flight_id: a }, { flight_id: UNKNOWN_FLIGHT }, { flight_id: b }];
    const plain = await features(VIEW, { keys });
    expect(plain.status).toBe(200);
    expect(plain.body.vectors).toEqual([
      { keys: keys[0], status: 'OK', features: expected[0] },
      { keys: keys[1], status: 'NOT_FOUND', features: null },
      { keys: keys[2], status: 'OK', features: expected[1] },
    ]);

    const encoded = await features(VIEW, { keys, encodedFor: MODEL });
    expect(encoded.status).toBe(200);
    expect(encoded.body.vectors.map((v) => [v.status, v.encoded === null])).toEqual([
      ['OK', false],
      ['NOT_FOUND', true],
      ['OK', false],
    ]);
    const alone = await features(VIEW, { keys: { flight_id: b }, encodedFor: MODEL });
    expect(alone.status).toBe(200);
    expect(encoded.body.vectors[2]?.encoded).toEqual(alone.body.vectors[0]?.encoded);

    const single = await features(VIEW, { keys: { flight_id: UNKNOWN_FLIGHT } });
    expect([single.status, single.body.error]).toEqual([404, 'unknown_entity']);
    expect(single.body.message).toContain(`no online features for {"flight_id":987654321} in feature group ${flights.name} v${flights.version}`);
    const text = await metrics();
    expect(Number(new RegExp(`^fti_feature_vectors_total\\{view="${VIEW}",status="NOT_FOUND"\\} (\\d+)$`, 'm').exec(text)?.[1])).toBe(2);
    expect(text).toMatch(new RegExp(`^fti_features_request_duration_seconds_count\\{view="${VIEW}",outcome="ok"\\} \\d+$`, 'm'));
    expect(text).toMatch(new RegExp(`^fti_features_request_duration_seconds_count\\{view="${VIEW}",outcome="client_error"\\} 1$`, 'm'));
  });

  it('answers 404 naming what exists for an unknown view or version, 409 for a view that cannot be served online, and 4xx for bad requests', async () => {
    const one = { keys: { flight_id: flightIds[0] } };
    const v = `v${flightDelays.version}`;
    const cases: Array<[string, unknown, number, string, string?]> = [
      ['no_such_view', one, 404, 'unknown_view', `feature view 'no_such_view' is not registered (registered views: archived_flights (v1), delays_lite (v1), ${VIEW} (${v}))`],
      [`${VIEW}@99`, one, 404, 'unknown_view_version', `feature view ${VIEW} has no version 99 (registered versions: ${v})`],
      ['archived_flights', one, 409, 'view_not_servable', 'feature view archived_flights v1 cannot be served online: feature group flights_archive v1 is not online-enabled'],
      [`${VIEW}@x`, one, 400, 'invalid_view'],
      [`${VIEW}@0`, one, 400, 'invalid_view'],
      ['Flight_Delays', one, 400, 'invalid_view'],
      [VIEW, { ...one, encodedFor: 'lite' }, 422, 'model_view_mismatch', `model lite v1 (champion) was trained on feature view delays_lite v1, not ${VIEW} ${v}: ask POST /v1/features/delays_lite@1 for its input`],
      [VIEW, { ...one, encodedFor: 'nobody' }, 404, 'unknown_model', "model 'nobody' is not registered"],
      [VIEW, { ...one, encodedFor: `${MODEL}@1` }, 403, 'version_not_allowed'],
      [VIEW, { ...one, encodedFor: `${MODEL}@nobody` }, 404, 'unknown_alias'],
      [VIEW, { ...one, encodedFor: 'x y' }, 400, 'invalid_model'],
      [VIEW, { keys: { airport: 'ORD' } }, 400, 'invalid_keys', `keys: unknown key "airport"; feature view ${VIEW} ${v} (keyed by flight_id: int)`],
      [VIEW, { keys: { flight_id: '12' } }, 400, 'invalid_keys', 'must be an integer'],
      [VIEW, { ...one, extra: true }, 400, 'invalid_request'],
      [VIEW, { keys: Array.from({ length: MAX_ENTITIES + 1 }, (_, i) => ({ flight_id: i })) }, 400, 'invalid_request', 'must NOT have more than 20 items'],
    ];
    for (const [segment, body, status, code, message] of cases) {
      const answer = await features(segment, body);
      expect({ segment, body, status: answer.status, error: answer.body.error }).toEqual({ segment, body, status, error: code });
      if (message) expect(answer.body.message).toContain(message);
    }
    // The delays_lite view serves its own model's input.
    const own = await features('delays_lite', { ...one, encodedFor: 'lite' });
    expect(own.status).toBe(200);
    expect(own.body.encodedFor).toMatchObject({ model: 'lite', version: 1, ref: 'champion' });
    expect(own.body.vectors[0]?.features).toEqual({ distance: expected[0]?.distance, hour: expected[0]?.hour, delay_mean_2h: expected[0]?.delay_mean_2h });
  });

  it('needs the bearer token the predict route needs', async () => {
    const body = { keys: { flight_id: flightIds[0] } };
    const none = await postFeatures(base, VIEW, body);
    expect([none.status, none.body.error, none.headers.get('www-authenticate')]).toEqual([401, 'unauthorized', 'Bearer realm="fti-serve"']);
    const wrong = await postFeatures(base, VIEW, body, { token: crypto.randomBytes(24).toString('hex') });
    expect([wrong.status, wrong.body.error]).toEqual([401, 'invalid_token']);
    // Unknown views are not probed without a token either.
    expect((await postFeatures(base, 'no_such_view', body)).status).toBe(401);
    expect((await features(VIEW, body)).status).toBe(200);
  });

  it('answers 503 request_timeout past the request timeout, as the predict route does', async () => {
    const slow = await buildServer(options({ requestTimeoutMs: 300 }));
    try {
      const slowBase = await slow.app.listen({ port: 0, host: '127.0.0.1' });
      const body = { keys: { flight_id: flightIds[0] } };
      expect((await postFeatures(slowBase, VIEW, body)).status).toBe(200);
      const answer = await store.db.knex.transaction(async (trx) => {
        await trx.raw('lock table ?? in access exclusive mode', [FLIGHTS_ONLINE]);
        return postFeatures(slowBase, VIEW, body, { timeoutMs: 15_000 });
      });
      expect([answer.status, answer.body.error, answer.body.details, answer.headers.get('retry-after')]).toEqual([503, 'request_timeout', { timeoutMs: 300 }, '1']);
      expect(answer.body.message).toMatch(/the feature lookup took longer than the server's request timeout of 300 ms/);
      expect(await (await fetch(`${slowBase}/metrics`)).text()).toMatch(/^fti_features_timeouts_total\{kind="request"\} 1$/m);
    } finally {
      await slow.app.close();
    }
  });
});
