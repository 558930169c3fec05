/**
 * A named prepared statement run with its rows in binary format, each DataRow decoded
 * in place off the socket (wire-tap.ts) into a BinaryTuple: its payload is laid out as
 * a binary COPY tuple, so BinaryCopyReader parses it (`bare`).
 *
 * For the prediction server's online lookup, a request's one round trip: pg's own
 * Query sends a Describe with every execution and builds a RowDescription, a result
 * and a text parser per column for every call, then parses each value from text.
 * Here the statement is parsed once per connection (as pg does for named statements,
 * and recorded where pg records it), and a call is Bind, Execute and Sync in one
 * write; its columns' types are known in advance (`describeColumns`).
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-EXT-QUERY
 */
import type { Duplex } from 'node:stream';
import pg from 'pg';
import { binaryDecoder, type BinaryTuple, type FieldDecoder } from './binary-copy.ts';
import { TupleQuery } from './wire-tap.ts';

const PARSE_COMPLETE = 0x31; // '1'
const BIND_COMPLETE = 0x32; // '2'
const DATA_ROW = 0x44; // 'D'

export interface NamedStatement {
  name: string;
  /** The statement's SQL, with $1… placeholders. */
  text: string;
}

/** The parts of pg's Connection a statement is run with (its own Query uses the same). */
interface ExtendedProtocol {
  stream: Duplex;
  /** Statements parsed on this connection, by name (pg's record, shared with its Query). */
  parsedStatements: Record<string, string>;
  parse(message: { name: string; text: string; types: string[] }): void;
  bind(message: { statement: string; values: Array<string | null>; binary: boolean }): void;
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
}

// Rows (and the parse and bind acknowledgements before them) are read here; CommandComplete, ReadyForQuery or an error are pg's.
class BinaryRows extends TupleQuery {
  private connection: ExtendedProtocol | undefined;

  constructor(
    private readonly statement: NamedStatement,
    private readonly values: Array<string | null>,
    onTuple: (t: BinaryTuple) => void,
  ) {
    super('binaryRows', DATA_ROW, onTuple, { bare: true });
  }

  submit(pgConnection: pg.Connection): Error | undefined {
    // The methods pg's own Query calls; its typings lack the statement record.
    const connection = pgConnection as unknown as ExtendedProtocol;
    const { name, text } = this.statement;
    const parsed = connection.parsedStatements[name];
    if (parsed !== undefined && parsed !== text) return new Error(`prepared statement ${name} was parsed on this connection for another statement`);
    const refused = this.tap.take(pgConnection);
    if (refused) return refused;
    this.connection = connection;
    // One write for the call's messages (pg's Query corks the same way).
    connection.stream.cork();
    try {
      if (parsed === undefined) connection.parse({ name, text, types: [] });
      connection.bind({ statement: name, values: this.values, binary: true });
      connection.execute({ portal: '', rows: 0 });
      connection.sync();
    } finally {
      connection.stream.uncork();
    }
    return undefined;
  }

  protected alsoClaims(type: number): boolean {
    return type === BIND_COMPLETE || type === PARSE_COMPLETE;
  }

  protected givesBackAfter(type: number): boolean {
    // Recorded where pg records it, since its own handler never sees the message.
    if (type === PARSE_COMPLETE && this.connection) this.connection.parsedStatements[this.statement.name] = this.statement.text;
    return false;
  }

  // Never asked for (no Describe is sent); a row handed to pg would be a row lost.
  handleRowDescription(): void {
    this.refuse(new Error('binaryRows: unexpected RowDescription'));
  }

  handleDataRow(): void {
    this.refuse(new Error('binaryRows: a row reached pg, not the reader'));
  }
}

/**
 * Runs `statement` with text parameters `values` on `client`, its rows in binary, and
 * calls `onTuple` for each row in order (valid only during the call: copy what you
 * keep); returns their number. Fails with Postgres' error when the statement does, or
 * with onTuple's first error once the rows have ended (the connection stays usable).
 */
export function binaryRows(client: pg.ClientBase, statement: NamedStatement, values: Array<string | null>, onTuple: (t: BinaryTuple) => void): Promise<number> {
  return client.query(new BinaryRows(statement, values, onTuple)).done;
}

/** The types a statement's binary rows can be decoded from, by OID. */
const DECODABLE: ReadonlyMap<number, string> = new Map([
  [pg.types.builtins.BOOL, 'boolean'],
  [pg.types.builtins.INT2, 'smallint'],
  [pg.types.builtins.INT4, 'integer'],
  [pg.types.builtins.INT8, 'bigint'],
  [pg.types.builtins.FLOAT8, 'double precision'],
  [pg.types.builtins.TEXT, 'text'],
  [pg.types.builtins.VARCHAR, 'text'],
  [pg.types.builtins.TIMESTAMPTZ, 'timestamptz'],
]);

/**
 * The result columns of `text` and a binary decoder for each (giving what pg's text
 * parsers give: bigint as a number, timestamptz as a Date), read by running it once
 * with `values` (chosen to return no rows). Throws naming a column of a type it
 * cannot decode.
 */
export async function describeColumns(client: pg.ClientBase, text: string, values: unknown[]): Promise<Array<{ name: string; decode: FieldDecoder }>> {
  const { fields } = await client.query({ text, values });
  return fields.map((f) => {
    const type = DECODABLE.get(f.dataTypeID);
    const decode = type === undefined ? undefined : binaryDecoder(type);
    if (!decode) throw new Error(`column ${f.name} has type OID ${f.dataTypeID}, which binaryRows does not decode`);
    return { name: f.name, decode };
  });
}

/** `values` as a Postgres array literal (a text parameter): numbers, booleans, strings and nulls. */
export function arrayLiteral(values: ReadonlyArray<unknown>): string {
  return `{${values.map(arrayElement).join(',')}}`;
}

function arrayElement(v: unknown): string {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`an array element must be a finite number, got ${v}`);
    return String(v);
  }
  if (typeof v === 'boolean') return v ? 't' : 'f';
  if (typeof v === 'string') return `"${v.replace(/[\\"]/g, '\\$&')}"`;
  throw new Error(`an array element must be a number, boolean, string or null, got ${typeof v}`);
}
