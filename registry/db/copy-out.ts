/**
 * A binary COPY TO read straight off a pg connection's socket: the protocol's
 * CopyData messages are found in each chunk the socket delivers and their payload
 * parsed in place into tuples (BinaryCopyReader). pg-copy-streams' `to` stream does
 * the same job for any consumer, but it cuts a buffer out of the chunk for every
 * message (one a row) and joins them again before handing them on, then one
 * stream event a chunk: on the millions of rows of a training dataset's joined groups
 * that was about a fifth of the reading process' time. Here a row costs its parse.
 *
 * The query is pg's for the rest of its life: once the COPY's data ends (CopyDone,
 * or an ErrorResponse, a server's cancel included) the bytes that follow go back to
 * pg's own parser, which completes or fails the query the usual way.
 * https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
 */
import type pg from 'pg';
import type { BinaryTuple } from './binary-copy.ts';
import { TupleQuery } from './wire-tap.ts';

/** Backend message types met during a COPY TO (https://www.postgresql.org/docs/current/protocol-message-formats.html). */
const COPY_OUT_RESPONSE = 0x48; // 'H'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'

// The COPY's messages are read here until CopyDone; CommandComplete, ReadyForQuery or an ErrorResponse are pg's.
class BinaryCopyOut extends TupleQuery {
  constructor(
    private readonly text: string,
    onTuple: (t: BinaryTuple) => void,
  ) {
    super('binaryCopyOut', COPY_DATA, onTuple);
  }

  submit(connection: pg.Connection): Error | undefined {
    const refused = this.tap.take(connection);
    if (refused) return refused;
    connection.query(this.text);
    return undefined;
  }

  protected alsoClaims(type: number): boolean {
    return type === COPY_OUT_RESPONSE || type === COPY_DONE;
  }

  protected givesBackAfter(type: number): boolean {
    return type === COPY_DONE;
  }

  // A statement that is not a COPY TO: refused when it ends.
  handleRowDescription(): void {
    this.refuse(new Error('binaryCopyOut runs a COPY TO statement; this one returns rows'));
  }

  handleDataRow(): void {}
}

/**
 * Runs `statement`, a `copy … to stdout (format binary)`, on `client` and calls
 * `onTuple` for each tuple, in order (valid only during the call: copy what you keep);
 * returns their number. Fails with Postgres' error when the statement does, or with
 * onTuple's first error once the COPY has ended (the connection stays usable).
 */
export function binaryCopyOut(client: pg.ClientBase, statement: string, onTuple: (t: BinaryTuple) => void): Promise<number> {
  return client.query(new BinaryCopyOut(statement, onTuple)).done;
}
