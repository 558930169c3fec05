/**
 * Real faults on the prediction server's alias listener (issue 13): its Postgres
 * backend is terminated (pg_terminate_backend), reconnects are refused (its role loses
 * LOGIN), and its backend freezes (SIGSTOP: the connection stays open, nothing
 * answers). The server must notice each, report itself down on /healthz while it
 * cannot hear alias moves, reconnect on its own, and serve the moves it missed.
 *
 * Real Postgres, real HTTP, a store filled by the real feature pipeline
 * (test/helpers/serving.ts); nothing mocked. The listener connects as a login role of
 * this suite's own (nothing else uses it), so refusing its logins never touches the
 * server's database pool. The periodic recheck is pushed out of reach here, so every
 * missed move this suite sees served was caught by the re-resolution after a reconnect.
 */
import fs from 'node:fs';
import type { Knex } from 'knex';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { urlWithRole } from '../../core/db-roles.ts';
import { airportDelays, flightDelays, flights } from '../../examples/flights/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { createKnex } from '../../registry/db/index.ts';
import { groupTables } from '../../registry/feature-store/index.ts';
import { ALIAS_LISTENER_APPLICATION_NAME, ModelRegistry } from '../../registry/models/index.ts';
import type { HealthReport } from '../../serving/routes.ts';
import { buildServer, type PredictionServer } from '../../serving/server.ts';
import { registerModelVersion } from '../helpers/models.ts';
import { createServingStore, postPredict, SERVING_HISTORY, until, type ServingStore } from '../helpers/serving.ts';

const project = defineProject({ featureGroups: [flights, airportDelays], featureViews: [flightDelays] });
const MODEL = 'flight_delay';
const APPLICATION_NAME = ALIAS_LISTENER_APPLICATION_NAME;
/** Fast keepalive so faults show within a second or two; the periodic recheck is out of reach (see above). */
const TUNING = { pingIntervalMs: 200, pingTimeoutMs: 3_500, deafAfterMs: 1_500, connectTimeoutMs: 2_000, retryMs: 100, maxRetryMs: 400, recheckMs: 600_000 };

describe('alias listener under real faults', () => {
  let store: ServingStore;
  let admin: Knex;
  let registry: ModelRegistry;
  let server: PredictionServer;
  let base: string;
  let listenerRole: string;
  let flightId: number;

  beforeAll(async () => {
    store = await createServingStore('alias_listener', project);
    const { knex, schema } = store.db;
    for (const seed of [1, 2, 3, 4]) await registerModelVersion(knex, store.backend.tf, { model: MODEL, view: flightDelays, ...SERVING_HISTORY, seed, epochs: 0 });
    registry = new ModelRegistry({ knex });
    await registry.setAlias(MODEL, 'champion', 1);
    const [first] = await knex(groupTables('flights', 2).online).orderBy('flight_id').limit(1).pluck<number[]>('flight_id');
    if (first === undefined) throw new Error('no online flights');
    flightId = first;

    // As a superuser: sees every session and may end it, and creates the listener's role.
    admin = createKnex({ url: inject('adminDatabaseUrl'), schema, poolMax: 1, applicationName: 'fti-test-admin-alias-listener' });
    listenerRole = `${schema}_listener`;
    await admin.raw(`create role ?? login password '${listenerRole}'`, [listenerRole]);
    const listenerUrl = urlWithRole(store.serving.url, listenerRole, listenerRole);
    server = await buildServer(store.serverOptions({ databaseUrl: listenerUrl, preload: [MODEL], aliasWatch: TUNING }));
    base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await server?.app.close();
    if (admin) {
      await admin.raw('select pg_terminate_backend(pid) from pg_stat_activity where usename = ?', [listenerRole]);
      await admin.raw('drop role if exists ??', [listenerRole]);
      await admin.destroy();
    }
    await store?.close();
  });

  const served = async (): Promise<number> => {
    const response = await postPredict(base, MODEL, { keys: { flight_id: flightId } }, { timeoutMs: 5_000 });
    expect(response.status).toBe(200);
    return response.body.version;
  };
  const health = async (): Promise<{ status: number; body: HealthReport }> => {
    const response = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(5_000) });
    return { status: response.status, body: (await response.json()) as HealthReport };
  };
  /** The backend pids of the listener's sessions, as pg_stat_activity shows them. */
  const listenerPids = async (): Promise<number[]> => {
    const result = (await admin.raw('select pid from pg_stat_activity where usename = ? and application_name = ? order by pid', [listenerRole, APPLICATION_NAME])) as { rows: Array<{ pid: number }> };
    return result.rows.map((r) => r.pid);
  };
  /** The one listening session (after a fault, its replacement). */
  const onePid = async (not?: number): Promise<number> => {
    const pids = await until(listenerPids, (p) => p.length === 1 && p[0] !== not, 5_000);
    return pids[0] as number;
  };
  const terminate = async (pid: number): Promise<void> => {
    const result = (await admin.raw('select pg_terminate_backend(?) as ok', [pid])) as { rows: Array<{ ok: boolean }> };
    expect(result.rows[0]?.ok).toBe(true);
  };

  it('starts healthy, listening as fti-alias-listener', async () => {
    expect(await served()).toBe(1);
    await onePid();
    const { body } = await until(health, (h) => h.status === 200, 5_000);
    expect(body).toMatchObject({ status: 'ok', database: 'ok', aliasAnnouncements: 'listening', aliasListener: { reconnects: 0 } });
    expect(body.reason).toBeUndefined();
  });

  it('a terminated listener reconnects on its own: a move made right after is served within 5 s', async () => {
    const pid = await onePid();
    await terminate(pid);
    await registry.setAlias(MODEL, 'champion', 2, { reason: 'moved while the listener was cut off' });
    const started = Date.now();
    await until(served, (v) => v === 2, 5_000);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await onePid(pid)).not.toBe(pid);
    const { body } = await until(health, (h) => h.status === 200, 5_000);
    expect(body.aliasListener.reconnects).toBeGreaterThanOrEqual(1);
  });

  it('while it cannot reconnect /healthz is 503 with the reason; once it can, it is healthy and serves the move it missed', async () => {
    const pid = await onePid();
    await admin.raw('alter role ?? nologin', [listenerRole]);
    try {
      await terminate(pid);
      const down = await until(health, (h) => h.status === 503, 5_000);
      expect(down.body).toMatchObject({ status: 'down', database: 'ok', aliasAnnouncements: 'reconnecting', aliasListener: { lastRoundTripAgeMs: null } });
      expect(down.body.reason).toMatch(/alias listener disconnected/);
      // Deaf: this move is announced to no one here.
      await registry.setAlias(MODEL, 'champion', 3, { reason: 'moved while the listener was deaf' });
      // Reconnects keep being refused (several attempts at this backoff), and it stays down, saying why.
      await new Promise((r) => setTimeout(r, 1_000));
      const still = await health();
      expect(still.status).toBe(503);
      expect(still.body.reason).toMatch(/not permitted to log in/);
      expect(await served()).toBe(2);
    } finally {
      await admin.raw('alter role ?? login', [listenerRole]);
    }
    const up = await until(health, (h) => h.status === 200, 5_000);
    expect(up.body).toMatchObject({ status: 'ok', aliasAnnouncements: 'listening' });
    expect(up.body.reason).toBeUndefined();
    await until(served, (v) => v === 3, 5_000);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^fti_alias_listener_up 1$/m);
    expect(Number(/^fti_alias_listener_reconnects_total (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(2);
  });

  it('a frozen backend (the connection open, nothing answering) is reported unresponsive, then replaced', async () => {
    const pid = await onePid();
    // Only ever signal a Postgres backend of this machine (the embedded cluster the global setup started).
    const command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    expect(command, `backend ${pid} is not a local postgres process: this fault needs the embedded Postgres`).toMatch(/^postgres/);
    process.kill(pid, 'SIGSTOP');
    try {
      // Connected, but its round trips go unanswered: deaf after deafAfterMs, before the round trip times out.
      const deaf = await until(health, (h) => h.status === 503, 5_000);
      expect(deaf.body).toMatchObject({ status: 'down', database: 'ok', aliasAnnouncements: 'unresponsive' });
      expect(deaf.body.reason).toMatch(/alias listener's last answered round trip was \d+ ms ago/);
      await registry.setAlias(MODEL, 'champion', 4, { reason: 'moved while the listener hung' });
      // The round trip times out, the session is dropped, and a new one listens (the frozen
      // backend stays listed until it may run again and sees its socket closed).
      await until(listenerPids, (p) => p.some((x) => x !== pid), 10_000);
      await until(health, (h) => h.status === 200, 10_000);
      await until(served, (v) => v === 4, 5_000);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
  });

  it('the lookup connections it holds, ended by Postgres, are replaced: the next prediction is answered', async () => {
    const servingSessions = async (): Promise<number[]> => {
      const result = (await admin.raw('select pid from pg_stat_activity where application_name = ? order by pid', ['fti-test-serve-alias_listener'])) as { rows: Array<{ pid: number }> };
      return result.rows.map((r) => r.pid);
    };
    const version = await served();
    // The online lookup keeps its connection between requests: it is among these.
    const ended = await servingSessions();
    expect(ended.length).toBeGreaterThan(0);
    for (const pid of ended) await terminate(pid);
    await until(servingSessions, (p) => !p.some((x) => ended.includes(x)), 5_000);
    // The sockets' close reaches the server.
    await new Promise((r) => setTimeout(r, 200));
    expect(await served()).toBe(version);
  });
});
