/**
 * Hears alias moves (NOTIFY on ALIAS_CHANNEL) so an online server can hot-swap its
 * model. LISTEN needs a session of its own, so this holds a dedicated pg.Client
 * rather than a pooled knex connection.
 *
 * Notifications sent while the connection is down are lost: on `onError`, close,
 * listen again and re-resolve the aliases you serve.
 */
import pg from 'pg';
import { z } from 'zod';
import { assertIdentifier } from '../../core/names.ts';
import { ALIAS_CHANNEL, type AliasNotification } from './types.ts';

const PayloadSchema = z.object({ schema: z.string(), model: z.string(), alias: z.string(), version: z.number().int() });

export interface AliasSubscription {
  close(): Promise<void>;
}

export interface ListenOptions {
  /** Connection trouble after LISTEN succeeded (default: written to stderr). */
  onError?: (err: Error) => void;
}

/** Calls `onChange` for every alias move committed in `schema`, until closed. */
export async function listenForAliasChanges(
  connectionString: string,
  schema: string,
  onChange: (change: AliasNotification) => void,
  options: ListenOptions = {},
): Promise<AliasSubscription> {
  assertIdentifier(schema, 'schema');
  const client = new pg.Client({ connectionString, application_name: 'fti-alias-listener' });
  const onError = options.onError ?? ((err: Error) => console.error(`alias listener: ${err.message}`));
  client.on('error', onError);
  client.on('notification', (msg) => {
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
  });
  await client.connect();
  try {
    await client.query(`LISTEN ${ALIAS_CHANNEL}`);
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  let closed = false;
  return {
    close: async () => {
      if (closed) return;
      closed = true;
      await client.end();
    },
  };
}
