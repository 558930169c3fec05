/**
 * Hears alias moves (NOTIFY on ALIAS_CHANNEL) so an online server can hot-swap its
 * model. LISTEN needs a session of its own, so this holds a dedicated pg.Client
 * rather than a pooled knex connection (application_name `fti-alias-listener`).
 *
 * The session is kept alive and checked, so a dead one is noticed rather than
 * trusted: TCP keepalive on the socket, and a cheap round trip (`select 1`) every
 * `pingIntervalMs` that must answer within `pingTimeoutMs`. A connection error, an
 * unexpected end (pg_terminate_backend, a restart) or a failed round trip drops the
 * session, and the listener connects and LISTENs again with backoff (`retryMs`,
 * doubling up to `maxRetryMs`) until it is closed.
 *
 * Notifications sent while no session listens are lost: `onReconnect` is called once
 * LISTEN is in place on a new session, so the caller re-resolves what it serves.
 * `state()` says whether a session listens and when it last answered a round trip.
 */
import pg from 'pg';
import { z } from 'zod';
import { assertIdentifier } from '../../core/names.ts';
import { ALIAS_CHANNEL, type AliasNotification } from './types.ts';

const PayloadSchema = z.object({ schema: z.string(), model: z.string(), alias: z.string(), version: z.number().int() });

/** The listener's application_name in pg_stat_activity. */
export const ALIAS_LISTENER_APPLICATION_NAME = 'fti-alias-listener';

/** How the listening session is kept alive and re-established (all in milliseconds). */
export interface ListenerKeepalive {
  /** A `select 1` round trip this often (default 5000). */
  pingIntervalMs?: number;
  /** A round trip (or the LISTEN) that takes longer counts as a dead session (default 5000). */
  pingTimeoutMs?: number;
  /** Longest wait for a new connection (default 10000). */
  connectTimeoutMs?: number;
  /** First reconnect delay; doubles after each failed attempt (default 500). */
  retryMs?: number;
  /** Longest reconnect delay (default 30000). */
  maxRetryMs?: number;
}

export const LISTENER_KEEPALIVE_DEFAULTS: Required<ListenerKeepalive> = {
  pingIntervalMs: 5_000,
  pingTimeoutMs: 5_000,
  connectTimeoutMs: 10_000,
  retryMs: 500,
  maxRetryMs: 30_000,
};

/** TCP keepalive probes start after this much silence on the socket (a backstop to the round trips). */
const TCP_KEEPALIVE_DELAY_MS = 10_000;

export interface ListenOptions extends ListenerKeepalive {
  /** The listening session was lost (error, end, failed round trip); a reconnect follows. Default: written to stderr. */
  onLost?: (err: Error) => void;
  /** A reconnect attempt failed; the next one follows in `retryInMs`. Default: written to stderr. */
  onReconnectFailed?: (err: Error, retryInMs: number) => void;
  /** LISTEN is in place on a new session after a loss: re-resolve what may have moved meanwhile. */
  onReconnect?: () => void;
}

export interface ListenerState {
  /** A session is connected and LISTENs. */
  listening: boolean;
  /** When `listening` last changed (epoch ms). */
  since: number;
  /** When the current session last answered a round trip (epoch ms); undefined while none listens. */
  lastRoundTripAt?: number;
  /** Sessions re-established after a loss. */
  reconnects: number;
  /** The last connection problem, if any. */
  lastError?: string;
}

export interface AliasSubscription {
  state(): ListenerState;
  close(): Promise<void>;
}

interface Session {
  client: pg.Client;
  pingTimer?: NodeJS.Timeout;
  pinging: boolean;
}

/**
 * Calls `onChange` for every alias move committed in `schema`, until closed. The first
 * connection must succeed (its error is thrown); later losses are retried.
 */
export async function listenForAliasChanges(
  connectionString: string,
  schema: string,
  onChange: (change: AliasNotification) => void,
  options: ListenOptions = {},
): Promise<AliasSubscription> {
  assertIdentifier(schema, 'schema');
  const settings = keepaliveSettings(options);
  const onLost = options.onLost ?? ((err: Error) => console.error(`alias listener: connection lost (${err.message}); reconnecting`));
  const onReconnectFailed = options.onReconnectFailed ?? ((err: Error, retryInMs: number) => console.error(`alias listener: reconnect failed (${err.message}); retrying in ${retryInMs} ms`));

  let closed = false;
  let session: Session | undefined;
  let since = Date.now();
  let lastRoundTripAt: number | undefined;
  let reconnects = 0;
  let lastError: string | undefined;
  let delay = settings.retryMs;
  let retryTimer: NodeJS.Timeout | undefined;

  const onNotification = (msg: pg.Notification): void => {
    if (msg.channel !== ALIAS_CHANNEL || !msg.payload) return;
    let payload: unknown;
    try {
      payload = JSON.parse(msg.payload);
    } catch {
      return;
    }
    const parsed = PayloadSchema.safeParse(payload);
    // One channel serves every schema on the database; keep only ours.
    if (parsed.success && parsed.data.schema === schema) onChange(parsed.data);
  };

  /** A new connected session with LISTEN in place; nothing is adopted yet. */
  const open = async (): Promise<pg.Client> => {
    const client = new pg.Client({
      connectionString,
      application_name: ALIAS_LISTENER_APPLICATION_NAME,
      keepAlive: true,
      keepAliveInitialDelayMillis: TCP_KEEPALIVE_DELAY_MS,
      connectionTimeoutMillis: settings.connectTimeoutMs,
    });
    // Always a listener: an 'error' from a session already given up must never crash the process.
    client.on('error', () => {});
    client.on('notification', onNotification);
    try {
      await client.connect();
      await withTimeout(client.query(`LISTEN ${ALIAS_CHANNEL}`), settings.pingTimeoutMs, 'LISTEN');
    } catch (err) {
      discard(client);
      throw err;
    }
    return client;
  };

  const adopt = (client: pg.Client): void => {
    const current: Session = { client, pinging: false };
    session = current;
    since = Date.now();
    lastRoundTripAt = since;
    delay = settings.retryMs;
    client.on('error', (err: Error) => drop(current, err));
    client.on('end', () => drop(current, new Error('connection ended')));
    current.pingTimer = setInterval(() => void ping(current), settings.pingIntervalMs);
    current.pingTimer.unref();
  };

  const ping = async (current: Session): Promise<void> => {
    // A round trip still out is bounded by its own timeout.
    if (current.pinging) return;
    current.pinging = true;
    try {
      await withTimeout(current.client.query('select 1'), settings.pingTimeoutMs, 'round trip (select 1)');
      if (session === current) lastRoundTripAt = Date.now();
    } catch (err) {
      drop(current, toError(err));
    } finally {
      current.pinging = false;
    }
  };

  const drop = (current: Session, err: Error): void => {
    if (session !== current) return;
    session = undefined;
    since = Date.now();
    lastRoundTripAt = undefined;
    lastError = err.message;
    clearInterval(current.pingTimer);
    discard(current.client);
    if (closed) return;
    onLost(err);
    scheduleReconnect();
  };

  const scheduleReconnect = (): void => {
    if (closed) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void reconnect();
    }, delay);
    retryTimer.unref();
  };

  const reconnect = async (): Promise<void> => {
    let client: pg.Client;
    try {
      client = await open();
    } catch (err) {
      if (closed) return;
      const error = toError(err);
      lastError = error.message;
      delay = Math.min(delay * 2, settings.maxRetryMs);
      onReconnectFailed(error, delay);
      scheduleReconnect();
      return;
    }
    if (closed) {
      discard(client);
      return;
    }
    reconnects += 1;
    adopt(client);
    options.onReconnect?.();
  };

  adopt(await open());
  return {
    state: () => ({ listening: session !== undefined, since, ...(lastRoundTripAt !== undefined ? { lastRoundTripAt } : {}), reconnects, ...(lastError !== undefined ? { lastError } : {}) }),
    close: async () => {
      if (closed) return;
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      const current = session;
      session = undefined;
      if (!current) return;
      clearInterval(current.pingTimer);
      // A graceful goodbye, unless the socket does not answer: then it is cut.
      await withTimeout(current.client.end(), settings.pingTimeoutMs, 'closing the listener').catch(() => current.client.connection.stream.destroy());
    },
  };
}

function keepaliveSettings(options: ListenerKeepalive): Required<ListenerKeepalive> {
  const settings = { ...LISTENER_KEEPALIVE_DEFAULTS };
  for (const key of Object.keys(LISTENER_KEEPALIVE_DEFAULTS) as Array<keyof ListenerKeepalive>) {
    const value = options[key];
    if (value === undefined) continue;
    if (!Number.isInteger(value) || value < 1) throw new Error(`alias listener: ${key} must be a positive integer (milliseconds), got ${String(value)}`);
    settings[key] = value;
  }
  if (settings.maxRetryMs < settings.retryMs) throw new Error(`alias listener: maxRetryMs (${settings.maxRetryMs}) must be at least retryMs (${settings.retryMs})`);
  return settings;
}

/** Ends a session that is no longer wanted, without waiting: pg cuts the socket if a query is stuck on it. */
function discard(client: pg.Client): void {
  client.end().catch(() => {});
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}
