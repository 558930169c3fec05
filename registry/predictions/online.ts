/**
 * Online features of a feature view, for the prediction server: given spine entity
 * keys, the spine group's online row and each joined group's online row (by the join
 * keys taken from the spine row), in one round trip. The statement is built once per
 * view and sent as a named prepared statement: Postgres parses it once per connection,
 * and plans it once too where the pool is made for point lookups (`pointLookups` of
 * createKnex, as the server's is); otherwise it plans it again for every call. Its
 * rows come back in binary, decoded straight off the socket (binary-rows.ts), with the
 * column types read once when the lookup is made. Columns come back under the view's
 * feature names: the same names a training dataset and batch inference give them, so
 * the one encoder reads all three.
 *
 * Semantics match the point-in-time join's "latest row before the event": the online
 * table holds each entity's latest row. A windowed group (rolling aggregates) holds
 * change points, and the lookup takes the latest one before the request time: the
 * windows as they are at that instant, computed the way the offline join does. A
 * joined group with no row for the key gives nulls (as in training); a spine entity
 * with no online row gives undefined.
 */
import crypto from 'node:crypto';
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { PG_TYPE, type FeatureType } from '../../features/schema.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { arrayLiteral, binaryRows, col, describeColumns, HeldConnections, id, ids, join, kw, rowTemplate, sql, toNative, type FieldDecoder, type Sql } from '../db/index.ts';
import { getFeatureGroup, groupTables, joinOnlineRow, type FeatureGroupRecord } from '../feature-store/index.ts';

export interface OnlineKey {
  name: string;
  type: FeatureType;
}

export interface OnlineViewLookup {
  view: { name: string; version: number };
  /** The spine group's entity keys: what a request must name, with their types. */
  keys: OnlineKey[];
  /** One feature row per entity, in request order, as of `at` (default: now); undefined where the spine has no online row. */
  lookup(entities: ReadonlyArray<Readonly<Record<string, unknown>>>, at?: Date): Promise<Array<Record<string, unknown> | undefined>>;
  /** Gives the connections it holds back to the pool (call before the pool is destroyed); later lookups borrow one each time. */
  close(): Promise<void>;
}

export interface OnlineLookupOptions {
  /**
   * Connections the lookup keeps between its calls instead of borrowing one from the
   * pool for each (HeldConnections): as many as it runs at once, for a server. 0 (the
   * default) keeps none.
   */
  heldConnections?: number;
}

/** Checks the view can be served (every group online, every feature stored) and prepares its lookup. */
export async function createOnlineLookup(knex: Knex, view: FeatureViewDefinition, options: OnlineLookupOptions = {}): Promise<OnlineViewLookup> {
  const where = `feature view ${view.name} v${view.version}`;
  const spine = await getFeatureGroup(knex, view.spine.group, view.spine.version);
  const joined = await Promise.all(view.joins.map((j) => getFeatureGroup(knex, j.group, j.version)));
  if (spine.windowed) throw new FtiError(FailureType.InvalidInput, `${where} cannot be served online: its spine ${spine.name} v${spine.version} is a windowed (aggregate) group, which has no single row per entity`);
  for (const g of [spine, ...joined]) {
    if (!g.online) throw new FtiError(FailureType.InvalidInput, `${where} cannot be served online: feature group ${g.name} v${g.version} is not online-enabled`);
  }

  const aliasOf = (group: string): { alias: string; record: FeatureGroupRecord } => {
    if (group === spine.name) return { alias: 's', record: spine };
    const i = view.joins.findIndex((j) => j.group === group);
    const record = joined[i];
    if (i < 0 || !record) throw new FtiError(FailureType.InvalidInput, `${where}: feature group ${group} is neither its spine nor joined`);
    return { alias: `j${i}`, record };
  };
  const features = view.features.map((f) => {
    const { alias, record } = aliasOf(f.group);
    if (!record.columns.some((c) => c.name === f.feature)) throw new FtiError(FailureType.InvalidInput, `${where}: feature group ${record.name} v${record.version} has no column ${f.feature}`);
    return sql`${col(alias, f.feature)} as ${id(f.name)}`;
  });

  const keys: OnlineKey[] = spine.entityKeys.map((name) => ({ name, type: typeOf(spine, name) }));
  const keyAliases = keys.map((_, i) => `k${i}`);
  // Placeholders only: the real arrays are bound per request, in this order.
  const arrays = keys.map((k) => sql`${[]}::${kw(`${PG_TYPE[k.type]}[]`)}`);
  // The request time, bound last (a placeholder here too).
  const at = sql`${new Date(0)}::timestamptz`;
  const spineMatch = join(
    keys.map((k, i) => sql`${col('s', k.name)} = ${col('q', keyAliases[i] as string)}`),
    ' and ',
  );
  const joins: Sql[] = view.joins.map((j, i) => {
    const record = joined[i] as FeatureGroupRecord;
    // Cast the spine side to the joined key's type, so the joined table's primary key is usable.
    const match = (a: string) => join(record.entityKeys.map((k) => sql`${col(a, k)} = ${col('s', j.on[k] as string)}::${kw(PG_TYPE[typeOf(record, k)])}`), ' and ');
    return joinOnlineRow(record, `j${i}`, match, at, 'left join');
  });
  const statement = sql`select q.ord, ${join(features, ', ')}
    from unnest(${join(arrays, ', ')}) with ordinality as q(${ids(keyAliases)}, ord)
    join ${id(groupTables(spine.name, spine.version).online)} s on ${spineMatch}
    ${join(joins, ' ')}`;
  const native = toNative(knex, statement);
  // One binding per windowed join, after the key arrays.
  const timeBindings = native.bindings.length - keys.length;
  const prepared = { name: `fti_online_${crypto.createHash('sha1').update(native.sql).digest('hex').slice(0, 24)}`, text: native.sql };
  const parameters = (entities: ReadonlyArray<Readonly<Record<string, unknown>>>, at: Date) => [
    ...keys.map((k) => arrayLiteral(entities.map((e) => e[k.name]))),
    ...Array.from({ length: timeBindings }, () => at.toISOString()),
  ];
  const connections = new HeldConnections(knex, options.heldConnections ?? 0);
  // The result's columns (q.ord, then the features) and their decoders, from a run with no keys.
  const [ord, ...columns] = await connections.use((client) => describeColumns(client, prepared.text, parameters([], new Date(0))));
  if (!ord) {
    await connections.close();
    throw new Error(`${where}: the lookup returns no columns`);
  }
  const names = columns.map((c) => c.name);
  const decoders = columns.map((c) => c.decode);
  const template = rowTemplate(names);

  return {
    view: { name: view.name, version: view.version },
    keys,
    async lookup(entities, at = new Date()) {
      const out: Array<Record<string, unknown> | undefined> = new Array(entities.length).fill(undefined);
      await connections.use((client) =>
        binaryRows(client, prepared, parameters(entities, at), (t) => {
          const row: Record<string, unknown> = { ...template };
          for (let i = 1; i < t.fields; i++) {
            const n = t.length[i] as number;
            row[names[i - 1] as string] = n < 0 ? null : (decoders[i - 1] as FieldDecoder)(t.buf, t.start[i] as number, n);
          }
          out[(ord.decode(t.buf, t.start[0] as number, 8) as number) - 1] = row;
        }),
      );
      return out;
    },
    close: () => connections.close(),
  };
}

function typeOf(group: FeatureGroupRecord, column: string): FeatureType {
  const c = group.columns.find((x) => x.name === column);
  if (!c) throw new FtiError(FailureType.InvalidInput, `feature group ${group.name} has no column ${column}`);
  return c.type;
}
