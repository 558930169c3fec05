/**
 * The prediction service under attack (issue #11): bearer tokens, body limits, callers
 * trying to thrash the model cache with version numbers, batches with unknown
 * entities, and slow lookups. Real HTTP, a real Postgres filled by the real feature
 * pipeline (test/helpers/serving.ts), models registered as training registers them.
 */
import crypto from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { airportDelays, flightDelays, flights } from '../../examples/flights/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { createKnex } from '../../registry/db/index.ts';
import { groupTables } from '../../registry/feature-store/index.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { parseServingTokens } from '../../serving/auth.ts';
import { withStatementTimeout } from '../../serving/database.ts';
import { buildServer, type PredictionServer, type ServerOptions } from '../../serving/server.ts';
import { registerModelVersion } from '../helpers/models.ts';
import { createServingStore, postPredict, SERVING_HISTORY, type ServingStore } from '../helpers/serving.ts';

const project = defineProject({ featureGroups: [flights, airportDelays], featureViews: [flightDelays] });
const MODEL = 'flight_delay';
const UNKNOWN_FLIGHT = 987654321;
// Two tokens, as while rotating: both are accepted.
const TOKEN = crypto.randomBytes(24).toString('hex');
const NEXT_TOKEN = crypto.randomBytes(24).toString('base64url');
const CAPACITY = 2;

describe('prediction service hardening', () => {
  let store: ServingStore;
  let server: PredictionServer;
  let base: string;
  let flightIds: number[];
  const others: PredictionServer[] = [];

  const options = (extra: Partial<ServerOptions> = {}): ServerOptions => store.serverOptions(extra);
  /** Another server on this store, closed after the suite. */
  const startServer = async (extra: Partial<ServerOptions>): Promise<{ server: PredictionServer; base: string }> => {
    const started = await buildServer(options(extra));
    others.push(started);
    return { server: started, base: await started.app.listen({ port: 0, host: '127.0.0.1' }) };
  };
  const metricsOf = async (url: string, token = TOKEN) => (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
  const loads = (metrics: string, version: number): number => Number(new RegExp(`^fti_model_loads_total\\{model="${MODEL}",version="${version}"\\} (\\d+)$`, 'm').exec(metrics)?.[1] ?? 0);

  beforeAll(async () => {
    store = await createServingStore('security_serving', project);
    const { knex } = store.db;
    // v1: the champion. v2: was the challenger, then the alias moved on (it held an alias).
    // v3: never aliased, but allow-listed. v4: never aliased, not allowed.
    for (const seed of [1, 2, 3, 4]) await registerModelVersion(knex, store.backend.tf, { model: MODEL, view: flightDelays, ...SERVING_HISTORY, seed, epochs: seed === 1 ? 1 : 0 });
    const registry = new ModelRegistry({ knex });
    await registry.setAlias(MODEL, 'champion', 1);
    await registry.setAlias(MODEL, 'challenger', 2);
    await registry.setAlias(MODEL, 'challenger', 1);
    flightIds = await knex(groupTables('flights', 2).online).orderBy('flight_id').limit(3).pluck<number[]>('flight_id');
    expect(flightIds).toHaveLength(3);

    server = await buildServer(options({ tokens: ` ${TOKEN}, ${NEXT_TOKEN} `, allowVersions: [`${MODEL}@3`], modelCapacity: CAPACITY, preload: [MODEL] }));
    base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    for (const s of others) await s.app.close();
    await server?.app.close();
    await store?.close();
  });

  it('with tokens set, /v1 needs a valid bearer token (either while rotating); /healthz stays open; /metrics is protected by default', async () => {
    const keys = { keys: { flight_id: flightIds[0] } };
    const ask = (headers: Record<string, string>) => postPredict(base, MODEL, keys, { headers });

    const none = await ask({});
    expect([none.status, none.body.error, none.headers.get('www-authenticate')]).toEqual([401, 'unauthorized', 'Bearer realm="fti-serve"']);
    expect(none.body.message).toMatch(/Authorization: Bearer <token>/);
    const attempts: Array<[string, string]> = [
      ['wrong token', `Bearer ${crypto.randomBytes(24).toString('hex')}`],
      ['right token plus a character', `Bearer ${TOKEN}x`],
      ['right token less a character', `Bearer ${TOKEN.slice(0, -1)}`],
      ['both tokens at once', `Bearer ${TOKEN},${NEXT_TOKEN}`],
      ['upper-cased token', `Bearer ${TOKEN.toUpperCase()}`],
    ];
    for (const [what, authorization] of attempts) {
      const denied = await ask({ authorization });
      expect({ what, status: denied.status, error: denied.body.error, challenge: denied.headers.get('www-authenticate') }).toEqual({
        what,
        status: 401,
        error: 'invalid_token',
        challenge: 'Bearer realm="fti-serve", error="invalid_token"',
      });
      // The answer never echoes a token.
      expect(JSON.stringify(denied.body)).not.toContain(TOKEN.slice(0, 12));
    }
    for (const authorization of [`Basic ${Buffer.from(`user:${TOKEN}`).toString('base64')}`, TOKEN, 'Bearer']) {
      const malformed = await ask({ authorization });
      expect([malformed.status, malformed.body.error]).toEqual([401, 'invalid_request']);
    }

    for (const authorization of [`Bearer ${TOKEN}`, `Bearer ${NEXT_TOKEN}`, `bearer ${TOKEN}`]) {
      const ok = await ask({ authorization });
      expect([authorization.slice(0, 8), ok.status, ok.body.predictions?.[0]?.status]).toEqual([authorization.slice(0, 8), 200, 'OK']);
    }

    // No probing for routes without a token either.
    expect((await fetch(`${base}/v1/anything`, { method: 'POST' })).status).toBe(401);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.status).toBe(401);
    expect(await metrics.json()).toMatchObject({ error: 'unauthorized' });
    expect(await metricsOf(base)).toMatch(/^fti_predict_request_duration_seconds_count\{model="",outcome="client_error"\} \d+$/m);
  });

  it('/metrics follows its own setting: public when asked, while predictions still need the token', async () => {
    const open = await startServer({ tokens: TOKEN, metricsPublic: true });
    const metrics = await fetch(`${open.base}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toMatch(/^# TYPE fti_predictions_total counter$/m);
    expect((await postPredict(open.base, MODEL, { keys: { flight_id: flightIds[0] } })).status).toBe(401);
    expect((await postPredict(open.base, MODEL, { keys: { flight_id: flightIds[0] } }, { token: TOKEN })).status).toBe(200);
    // Without tokens there is nothing to protect: the server is open, as before.
    const unprotected = await startServer({});
    expect((await postPredict(unprotected.base, MODEL, { keys: { flight_id: flightIds[0] } })).status).toBe(200);
  });

  it('refuses weak or malformed tokens at startup, without naming them', async () => {
    const weak = 'hunter2';
    expect(() => parseServingTokens(weak)).toThrow(/the serving token is 7 characters long; use at least 16/);
    expect(() => parseServingTokens(` , `)).toThrow(/holds no token/);
    expect(() => parseServingTokens(`${TOKEN},${'x'.repeat(15)}`)).toThrow(/serving token #2 is 15 characters long/);
    expect(() => parseServingTokens(`${'a'.repeat(20)}"; drop table models`)).toThrow(/characters a bearer token cannot carry/);
    expect(parseServingTokens(` ${TOKEN} ,${NEXT_TOKEN}, `)).toEqual([TOKEN, NEXT_TOKEN]);
    await expect(buildServer(options({ tokens: weak }))).rejects.toThrow(/at least 16/);
    await buildServer(options({ tokens: weak })).catch((err: Error) => expect(err.message).not.toContain(weak));
  });

  it('a 10 MB body answers 413 with a JSON error, with a length or streamed; without a token it is not even read', async () => {
    const huge = JSON.stringify({ keys: { flight_id: flightIds[0] }, pad: 'x'.repeat(10 * 1024 * 1024) });
    const sized = await postPredict(base, MODEL, undefined, { raw: huge, token: TOKEN });
    expect([sized.status, sized.body.error]).toEqual([413, 'body_too_large']);
    expect(sized.body.message).toEqual(expect.any(String));

    // No content-length: the limit holds on the bytes as they arrive.
    const chunk = new TextEncoder().encode('x'.repeat(1024 * 1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode('{"keys":{"flight_id":1},"pad":"'));
        if (sent++ < 10) controller.enqueue(chunk);
        else controller.close();
      },
    });
    const streamed = await fetch(`${base}/v1/models/${MODEL}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: stream,
      duplex: 'half',
    } as RequestInit);
    expect([streamed.status, ((await streamed.json()) as { error: string }).error]).toEqual([413, 'body_too_large']);

    const anonymous = await postPredict(base, MODEL, undefined, { raw: huge });
    expect([anonymous.status, anonymous.body.error]).toEqual([401, 'unauthorized']);
  });

  it('1,000 distinct @N requests load only versions that held an alias or are allow-listed, and never evict the champion', async () => {
    const champion = await postPredict(base, MODEL, { keys: { flight_id: flightIds[0] } }, { token: TOKEN });
    expect(champion.body).toMatchObject({ version: 1, ref: 'champion' });
    const championScore = champion.body.predictions[0]?.score;
    expect(loads(await metricsOf(base), 1)).toBe(1);

    const answers = new Map<number, { status: number; error?: string }>();
    const versions = Array.from({ length: 1000 }, (_, i) => i + 1);
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let n = versions.shift(); n !== undefined; n = versions.shift()) {
          const r = await postPredict(base, `${MODEL}@${n}`, { keys: { flight_id: flightIds[1] } }, { token: TOKEN });
          answers.set(n, { status: r.status, error: r.body.error });
          if (n === 4) expect(r.body.message).toMatch(/version 4 is not served by number: only versions that hold or held an alias .* or are allow-listed/);
        }
      }),
    );
    expect(answers.get(1)).toEqual({ status: 200, error: undefined });
    expect(answers.get(2)).toEqual({ status: 200, error: undefined }); // held the challenger alias once
    expect(answers.get(3)).toEqual({ status: 200, error: undefined }); // allow-listed
    expect(answers.get(4)).toEqual({ status: 403, error: 'version_not_allowed' });
    const rest = [...answers].filter(([n]) => n > 4);
    expect(rest).toHaveLength(996);
    expect(rest.every(([, a]) => a.status === 404 && a.error === 'unknown_version')).toBe(true);

    // The allowed versions fight over the one slot the pinned champion leaves (capacity 2): each asks evicts the other.
    for (let i = 0; i < 10; i++) {
      for (const n of [2, 3]) expect((await postPredict(base, `${MODEL}@${n}`, { keys: { flight_id: flightIds[1] } }, { token: TOKEN })).status).toBe(200);
    }

    const metrics = await metricsOf(base);
    expect(loads(metrics, 2) + loads(metrics, 3)).toBeGreaterThanOrEqual(20);
    // The champion was loaded once (preload) and never again; version 4 never.
    expect(loads(metrics, 1)).toBe(1);
    expect(metrics).not.toMatch(/^fti_model_loads_total\{model="flight_delay",version="4"\}/m);
    expect(metrics).toMatch(/^fti_model_version_refusals_total\{model="flight_delay",reason="not_allowed"\} 1$/m);
    expect(Number(/^fti_models_loaded (\d+)$/m.exec(metrics)?.[1])).toBeLessThanOrEqual(CAPACITY);
    expect(server.resolver.loaded()).toContain(`${MODEL}@1`);
    expect(server.resolver.loaded()).not.toContain(`${MODEL}@4`);
    const again = await postPredict(base, MODEL, { keys: { flight_id: flightIds[0] } }, { token: TOKEN });
    expect(again.body).toMatchObject({ version: 1, predictions: [{ score: championScore, status: 'OK' }] });
  });

  it('a batch with one unknown entity answers 200: the unknown one marked NOT_FOUND, the others scored as if asked alone', async () => {
    const [a, b] = flightIds as [number, number];
    const alone = async (flightId: number) => (await postPredict(base, MODEL, { keys: { flight_id: flightId } }, { token: TOKEN })).body.predictions[0]?.score as number;
    const [scoreA, scoreB] = [await alone(a), await alone(b)];
    expect(scoreA).toEqual(expect.any(Number));

    const batch = await postPredict(base, MODEL, { keys: [{ flight_id: a }, { flight_id: UNKNOWN_FLIGHT }, { flight_id: b }, { flight_id: a }] }, { token: TOKEN });
    expect(batch.status).toBe(200);
    expect(batch.body).toMatchObject({ model: MODEL, version: 1, ref: 'champion' });
    expect(batch.body.predictions.map((p) => [p.keys, p.status])).toEqual([
      [{ flight_id: a }, 'OK'],
      [{ flight_id: UNKNOWN_FLIGHT }, 'NOT_FOUND'],
      [{ flight_id: b }, 'OK'],
      [{ flight_id: a }, 'OK'],
    ]);
    expect(batch.body.predictions[1]?.score).toBeNull();
    expect(batch.body.predictions[0]?.score).toBeCloseTo(scoreA, 6);
    expect(batch.body.predictions[2]?.score).toBeCloseTo(scoreB, 6);
    expect(batch.body.predictions[3]?.score).toBeCloseTo(scoreA, 6);

    const allUnknown = await postPredict(base, MODEL, { keys: [{ flight_id: UNKNOWN_FLIGHT }] }, { token: TOKEN });
    expect([allUnknown.status, allUnknown.body.predictions]).toEqual([200, [{ keys: { flight_id: UNKNOWN_FLIGHT }, score: null, status: 'NOT_FOUND' }]]);
    // One entity, not in a list: still an error, as documented.
    const single = await postPredict(base, MODEL, { keys: { flight_id: UNKNOWN_FLIGHT } }, { token: TOKEN });
    expect([single.status, single.body.error]).toEqual([404, 'unknown_entity']);
    expect(await metricsOf(base)).toMatch(/^fti_entities_not_found_total\{model="flight_delay"\} 2$/m);
  });

  it("a lookup blocked past the pool's statement timeout answers 503 statement_timeout, quickly; then the server answers again", async () => {
    const knex = createKnex({ url: withStatementTimeout(store.serving.url, 500), schema: store.db.schema, applicationName: 'fti-test-serving-statement-timeout' });
    try {
      expect((await knex.raw<{ rows: Array<{ statement_timeout: string }> }>('show statement_timeout')).rows[0]?.statement_timeout).toBe('500ms');
      const slow = await startServer({ knex, preload: [MODEL], requestTimeoutMs: 20_000 });
      const keys = { keys: { flight_id: flightIds[0] } };
      expect((await postPredict(slow.base, MODEL, keys)).status).toBe(200);
      const { answer, ms } = await whileOnlineTableLocked(store, async () => {
        const started = performance.now();
        return { answer: await postPredict(slow.base, MODEL, keys, { timeoutMs: 15_000 }), ms: performance.now() - started };
      });
      expect([answer.status, answer.body.error]).toEqual([503, 'statement_timeout']);
      expect(answer.body.message).toMatch(/statement timeout/);
      expect(ms).toBeLessThan(10_000);
      expect((await postPredict(slow.base, MODEL, keys)).status).toBe(200);
      expect(await metricsOf(slow.base)).toMatch(/^fti_predict_timeouts_total\{kind="statement"\} 1$/m);
    } finally {
      for (const s of others.splice(0)) await s.app.close();
      await knex.destroy();
    }
  });

  it('a request slower than the request timeout answers 503 request_timeout instead of hanging; what it held is given back', async () => {
    const slow = await startServer({ preload: [MODEL], requestTimeoutMs: 300 });
    const keys = { keys: { flight_id: flightIds[0] } };
    const before = await postPredict(slow.base, MODEL, keys);
    expect(before.status).toBe(200);
    const { answer, ms } = await whileOnlineTableLocked(store, async () => {
      const started = performance.now();
      return { answer: await postPredict(slow.base, MODEL, keys, { timeoutMs: 15_000 }), ms: performance.now() - started };
    });
    expect([answer.status, answer.body.error, answer.body.details, answer.headers.get('retry-after')]).toEqual([503, 'request_timeout', { timeoutMs: 300 }, '1']);
    expect(ms).toBeGreaterThanOrEqual(290);
    expect(ms).toBeLessThan(5_000);
    // Once the lock is gone the abandoned lookup finishes in the background; the server answers as before.
    const after = await postPredict(slow.base, MODEL, keys);
    expect(after.status).toBe(200);
    expect(after.body.predictions[0]?.score).toBe(before.body.predictions[0]?.score);
    expect(await metricsOf(slow.base)).toMatch(/^fti_predict_timeouts_total\{kind="request"\} 1$/m);
  });
});

/**
 * Runs `fn` while a transaction holds an ACCESS EXCLUSIVE lock on the flights' online
 * table (as a long migration would): every lookup of it waits until the lock goes.
 */
async function whileOnlineTableLocked<T>(store: ServingStore, fn: () => Promise<T>): Promise<T> {
  return store.db.knex.transaction(async (trx) => {
    await trx.raw('lock table ?? in access exclusive mode', [groupTables('flights', 2).online]);
    return fn();
  });
}
