/**
 * Keeps the server listening for alias moves (Postgres NOTIFY on a connection of its
 * own, kept alive and re-established by the registry's listener). Announcements sent
 * while the connection is down are lost, so the served aliases are re-resolved from
 * the registry after every reconnect, and every `recheckMs` as a safety net.
 *
 * `health()` says whether the server can hear moves: a listener that is disconnected
 * (and not yet reconnected), or whose last answered round trip is older than
 * `deafAfterMs`, is deaf — the server may be answering with a version an alias has
 * left, and /healthz reports it down.
 */
import type { Logger } from '../core/log.ts';
import { LISTENER_KEEPALIVE_DEFAULTS, listenForAliasChanges, type AliasNotification, type AliasSubscription } from '../registry/models/index.ts';

/**
 * How the alias listener is kept alive and checked, in milliseconds (ServerOptions
 * `aliasWatch`). Defaults: a `select 1` every 5 s that must answer within 5 s;
 * reconnects after 0.5 s, doubling up to 30 s; deaf after 2 × ping interval + ping
 * timeout (15 s) without an answered round trip; every served alias re-resolved every
 * 30 s whatever the listener says.
 */
export interface AliasWatchTuning {
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  connectTimeoutMs?: number;
  retryMs?: number;
  maxRetryMs?: number;
  /** No answered round trip for this long: deaf (default 2 × pingIntervalMs + pingTimeoutMs). */
  deafAfterMs?: number;
  /** Re-resolve every served alias this often, announced or not (default 30000). */
  recheckMs?: number;
}

export const ALIAS_WATCH_DEFAULTS = { ...LISTENER_KEEPALIVE_DEFAULTS, recheckMs: 30_000 } as const;

export interface AliasWatchOptions extends AliasWatchTuning {
  databaseUrl: string;
  schema: string;
  onChange: (change: AliasNotification) => void;
  /** Re-resolves every served alias: after a reconnect, and every `recheckMs`. */
  recheck: () => Promise<void>;
  /** The listener lost its connection (false) or listens again (true). */
  onListening?: (listening: boolean) => void;
  log: Logger;
}

export interface AliasWatchHealth {
  /** `reconnecting`: no connection; `unresponsive`: connected, but no round trip answered for `deafAfterMs`. */
  state: 'listening' | 'reconnecting' | 'unresponsive';
  /** Why the listener is deaf; absent while it listens. */
  reason?: string;
  /** Age of the last answered round trip; null while disconnected. */
  lastRoundTripAgeMs: number | null;
  reconnects: number;
  lastError?: string;
}

export interface AliasWatch {
  readonly listening: boolean;
  health(now?: number): AliasWatchHealth;
  close(): Promise<void>;
}

export async function watchAliases(options: AliasWatchOptions): Promise<AliasWatch> {
  const { log } = options;
  const pingIntervalMs = options.pingIntervalMs ?? ALIAS_WATCH_DEFAULTS.pingIntervalMs;
  const pingTimeoutMs = options.pingTimeoutMs ?? ALIAS_WATCH_DEFAULTS.pingTimeoutMs;
  const deafAfterMs = options.deafAfterMs ?? 2 * pingIntervalMs + pingTimeoutMs;
  const recheckMs = options.recheckMs ?? ALIAS_WATCH_DEFAULTS.recheckMs;
  for (const [key, value] of Object.entries({ deafAfterMs, recheckMs })) {
    if (!Number.isInteger(value) || value < 1) throw new Error(`aliasWatch.${key} must be a positive integer (milliseconds), got ${String(value)}`);
  }
  let closed = false;
  let rechecking = 0;

  /** Periodic rechecks never pile up; one after a reconnect always runs (a running one may have read before the move). */
  const recheck = (why: 'reconnect' | 'periodic'): void => {
    if (closed || (why === 'periodic' && rechecking > 0)) return;
    rechecking += 1;
    void options
      .recheck()
      .catch((err: unknown) => log('re-resolving served aliases failed', { why, error: err instanceof Error ? err.message : String(err) }))
      .finally(() => {
        rechecking -= 1;
      });
  };

  const subscription: AliasSubscription = await listenForAliasChanges(options.databaseUrl, options.schema, options.onChange, {
    pingIntervalMs,
    pingTimeoutMs,
    connectTimeoutMs: options.connectTimeoutMs ?? ALIAS_WATCH_DEFAULTS.connectTimeoutMs,
    retryMs: options.retryMs ?? ALIAS_WATCH_DEFAULTS.retryMs,
    maxRetryMs: options.maxRetryMs ?? ALIAS_WATCH_DEFAULTS.maxRetryMs,
    onLost: (err) => {
      log('alias announcements lost; reconnecting', { error: err.message });
      options.onListening?.(false);
    },
    onReconnectFailed: (err, retryInMs) => log('alias listener reconnect failed', { error: err.message, retryInMs }),
    onReconnect: () => {
      log('alias announcements: listening again; re-resolving served aliases');
      options.onListening?.(true);
      recheck('reconnect');
    },
  });
  const timer = setInterval(() => recheck('periodic'), recheckMs);
  timer.unref();

  const health = (now = Date.now()): AliasWatchHealth => {
    const state = subscription.state();
    const base = { reconnects: state.reconnects, ...(state.lastError !== undefined ? { lastError: state.lastError } : {}) };
    if (!state.listening || state.lastRoundTripAt === undefined) {
      const down = Math.max(0, now - state.since);
      return {
        state: 'reconnecting',
        reason: `alias listener disconnected for ${down} ms${state.lastError ? ` (${state.lastError})` : ''}: alias moves are not heard until it reconnects`,
        lastRoundTripAgeMs: null,
        ...base,
      };
    }
    const age = Math.max(0, now - state.lastRoundTripAt);
    if (age > deafAfterMs) {
      return { state: 'unresponsive', reason: `alias listener's last answered round trip was ${age} ms ago (limit ${deafAfterMs} ms): alias moves may not be heard`, lastRoundTripAgeMs: age, ...base };
    }
    return { state: 'listening', lastRoundTripAgeMs: age, ...base };
  };

  return {
    get listening() {
      return health().state === 'listening';
    },
    health,
    close: async () => {
      closed = true;
      clearInterval(timer);
      await subscription.close().catch(() => {});
    },
  };
}
