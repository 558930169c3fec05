/**
 * Keeps the server listening for alias moves (Postgres NOTIFY on a connection of its
 * own). Announcements sent while the connection is down are lost, so after every
 * reconnect the served aliases are re-resolved from the registry.
 */
import type { Logger } from '../core/log.ts';
import { listenForAliasChanges, type AliasNotification, type AliasSubscription } from '../registry/models/index.ts';

export interface AliasWatch {
  readonly listening: boolean;
  close(): Promise<void>;
}

export interface AliasWatchOptions {
  databaseUrl: string;
  schema: string;
  onChange: (change: AliasNotification) => void;
  /** Called after a reconnect: re-resolve what may have moved meanwhile. */
  onReconnect: () => Promise<void>;
  log: Logger;
  /** First retry delay; doubles up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
}

export async function watchAliases(options: AliasWatchOptions): Promise<AliasWatch> {
  const { retryMs = 500, maxRetryMs = 30_000, log } = options;
  let subscription: AliasSubscription | undefined;
  let listening = false;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let delay = retryMs;

  const connect = async (): Promise<void> => {
    subscription = await listenForAliasChanges(options.databaseUrl, options.schema, options.onChange, { onError: (err) => void lost(err) });
    listening = true;
    delay = retryMs;
  };

  const lost = async (err: Error): Promise<void> => {
    if (closed || !listening) return;
    listening = false;
    log('alias announcements lost; reconnecting', { error: err.message });
    await subscription?.close().catch(() => {});
    subscription = undefined;
    schedule();
  };

  const schedule = (): void => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      connect()
        .then(async () => {
          log('alias announcements: listening again');
          await options.onReconnect();
        })
        .catch((err: unknown) => {
          log('alias listener reconnect failed', { error: err instanceof Error ? err.message : String(err), retryInMs: delay });
          delay = Math.min(delay * 2, maxRetryMs);
          schedule();
        });
    }, delay);
    timer.unref();
  };

  await connect();
  return {
    get listening() {
      return listening;
    },
    close: async () => {
      closed = true;
      if (timer) clearTimeout(timer);
      await subscription?.close().catch(() => {});
    },
  };
}
