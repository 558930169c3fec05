/**
 * A small tagged-template builder for the dynamic SQL of the feature store (column
 * lists and expressions that depend on a feature group's schema). Identifiers go
 * through knex's `??` binding and values through `?` binding, so nothing a user
 * names is spliced into SQL text. Integers that must be literals (DDL: partition
 * bounds, CHECK constraints) go through `int()`, which accepts safe integers only.
 *
 *   raw(knex, sql`select ${ids(cols)} from ${id(table)} where ${id(col)} > ${value}`)
 */
import type { Knex } from 'knex';

export class Sql {
  constructor(
    readonly text: string,
    readonly bindings: readonly unknown[],
  ) {}
}

/** An identifier (table or column), bound with `??`. A dotted name is schema-qualified by knex. */
export function id(name: string): Sql {
  return new Sql('??', [name]);
}

export function ids(names: readonly string[], separator = ', '): Sql {
  return join(names.map(id), separator);
}

/** A column of a table alias: `alias.column`. */
export function col(alias: string, name: string): Sql {
  return new Sql('??.??', [alias, name]);
}

export function cols(alias: string, names: readonly string[], separator = ', '): Sql {
  return join(names.map((n) => col(alias, n)), separator);
}

/** A safe integer inlined as a literal, for DDL where bind parameters are not allowed. */
export function int(value: number): Sql {
  if (!Number.isSafeInteger(value)) throw new TypeError(`not a safe integer: ${value}`);
  return new Sql(String(value), []);
}

/** Fixed SQL text written by us (keywords, operators, casts); never user input. */
export function kw(text: string): Sql {
  if (text.includes('?')) throw new TypeError('keyword text must not contain ?');
  return new Sql(text, []);
}

export function join(parts: readonly Sql[], separator: string): Sql {
  return new Sql(parts.map((p) => p.text).join(separator), parts.flatMap((p) => p.bindings));
}

export function sql(strings: TemplateStringsArray, ...values: unknown[]): Sql {
  let text = strings[0] ?? '';
  const bindings: unknown[] = [];
  values.forEach((value, i) => {
    if (value instanceof Sql) {
      text += value.text;
      bindings.push(...value.bindings);
    } else {
      text += '?';
      bindings.push(value);
    }
    text += strings[i + 1] ?? '';
  });
  return new Sql(text, bindings);
}

export function raw(knex: Knex, query: Sql): Knex.Raw {
  return knex.raw(query.text, query.bindings as Knex.RawBinding[]);
}

/** The final SQL text with identifiers quoted and no value bindings (for COPY). */
export function toText(knex: Knex, query: Sql): string {
  if (query.text.replace(/\?\?/g, '').includes('?')) throw new TypeError('toText takes identifier bindings only');
  return knex.raw(query.text, query.bindings as Knex.RawBinding[]).toQuery();
}

/**
 * The final SQL text with values inlined as literals, for statements that take no bind
 * parameters (COPY (query) TO). Only values of the kinds the query builders bind are
 * accepted: timestamps (inlined as UTC, with their zone), numbers, booleans, strings
 * (quoted, quotes doubled) and null.
 */
export function toInlined(knex: Knex, query: Sql): string {
  const markers = query.text.match(/\?\??/g) ?? [];
  if (markers.length !== query.bindings.length) throw new TypeError('bindings and placeholders differ in number');
  const bindings = query.bindings.map((value, i) => (markers[i] === '??' ? value : knex.raw(literal(value))));
  return knex.raw(query.text, bindings as Knex.RawBinding[]).toQuery();
}

function literal(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw new TypeError('an invalid date cannot be inlined');
    return `'${value.toISOString()}'::timestamptz`;
  }
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`a non-finite number cannot be inlined: ${value}`);
    return `(${String(value)})`;
  }
  if (typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (typeof value === 'string') return `'${value.replace(/'/g, "''")}'`;
  throw new TypeError(`a ${typeof value} cannot be inlined into SQL`);
}

/** Positional SQL (`$1`…) and its bindings, for a raw pg client (cursors, COPY). */
export function toNative(knex: Knex, query: Sql): { sql: string; bindings: unknown[] } {
  const native = knex.raw(query.text, query.bindings as Knex.RawBinding[]).toSQL().toNative();
  return { sql: native.sql, bindings: [...native.bindings] };
}
