/**
 * A training dataset's shuffle key (`_shuffle`): hashtext of a spine row's entity keys
 * and event time as text, the order its rows are stored and read in. It mixes the
 * entity keys and the time, so an entity's rows (a user's, a card's) are spread over
 * the table, not kept together. The time is printed in UTC whatever the session's
 * TimeZone (a timestamptz's text is in that zone), so a server in another zone stores
 * the same snapshot in the same order: the same text as a UTC session's,
 * '2001-01-01 00:01:00+00'.
 *
 * The SQL plans compute it in Postgres. The stream plan computes the same value in
 * Node from the spine's bytes (registry/db/pg-hash.ts) where it can: bigint and text
 * keys, a timestamptz event time, a server printing dates in ISO style and storing
 * UTF-8; printing a timestamp and hashing it per row took a third of Postgres's time
 * to send a 3M-row spine.
 */
import type { FeatureViewDefinition } from '../../features/views.ts';
import { id, join, PgText, sql, type BinaryTuple, type Sql } from '../db/index.ts';
import type { SpineInt4 } from '../feature-store/index.ts';

/** What the server prints and stores text as (current_setting of each). */
export interface ServerText {
  dateStyle: string;
  encoding: string;
}

/** The shuffle key as SQL over the spine's output columns, and as the stream plan computes it when it can. */
export function shuffleKey(def: FeatureViewDefinition, spineTypes: ReadonlyMap<string, string>, server: ServerText): { expr: Sql; inNode?: SpineInt4 } {
  const keys = def.spine.entityKeys;
  const et = def.spine.eventTime;
  const keyText = join([...keys.map((k) => sql`${id(k)}::text`), sql`(${id(et)} at time zone 'UTC')::text || '+00'`], ` || '|' || `);
  const expr = sql`hashtext(${keyText})`;
  const printable = (t: string | undefined) => t === 'bigint' || t === 'text';
  const inNode = server.dateStyle.toUpperCase().startsWith('ISO') && server.encoding.toUpperCase() === 'UTF8' && keys.every((k) => printable(spineTypes.get(k))) && spineTypes.get(et) === 'timestamptz';
  if (!inNode) return { expr };
  const isText = keys.map((k) => spineTypes.get(k) === 'text');
  const text = new PgText();
  return {
    expr,
    inNode: {
      columns: [...keys, et],
      // A value of the row alone (this function exists only where Node prints it as the server does): a spine segment may keep it.
      kept: 'shuffle-key/1',
      value(t: BinaryTuple, view: DataView, fields: readonly number[]): number {
        text.reset();
        for (let k = 0; k < isText.length; k++) {
          const f = fields[k] as number;
          const length = t.length[f] as number;
          // Entity keys are never null (ingest rejects such rows): hashtext of a null would be null.
          if (length < 0) throw new Error(`a spine row of ${def.name} has a null entity key ${keys[k]}: no shuffle key`);
          if (k > 0) text.ascii('|');
          if (isText[k]) text.raw(t.buf, t.start[f] as number, length);
          else text.int8(view, t.start[f] as number);
        }
        const time = fields[isText.length] as number;
        if ((t.length[time] as number) < 0) throw new Error(`a spine row of ${def.name} has a null event time: no shuffle key`);
        if (isText.length > 0) text.ascii('|');
        text.timestampUtc(view, t.start[time] as number);
        text.ascii('+00');
        return text.hash();
      },
    },
  };
}
