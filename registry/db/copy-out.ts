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
import { BinaryCopyReader, type BinaryTuple } from './binary-copy.ts';
import { INTERSPERSED, WireTap } from './wire-tap.ts';

/** Backend message types met during a COPY TO (https://www.postgresql.org/docs/current/protocol-message-formats.html). */
const COPY_OUT_RESPONSE = 0x48; // 'H'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'

class BinaryCopyOut implements pg.Submittable {
  readonly done: Promise<number>;
  private resolve!: (rows: number) => void;
  private reject!: (err: unknown) => void;
  private readonly reader: BinaryCopyReader;
  /** What went wrong on this side: onTuple threw (the COPY is read to its end, unseen), or the stream was malformed. */
  private failure: unknown;
  // The COPY's messages are read here until CopyDone; CommandComplete, ReadyForQuery or an ErrorResponse are pg's.
  private readonly tap = new WireTap({
    claims: (type) => type === COPY_DATA || type === COPY_OUT_RESPONSE || type === COPY_DONE || INTERSPERSED.has(type),
    payload: (type, buf, start, end) => {
      if (type === COPY_DATA) this.reader.feed(buf, start, end);
    },
    ended: (type) => type === COPY_DONE,
    broken: (err) => {
      this.failure ??= err;
    },
  });

  constructor(
    private readonly text: string,
    onTuple: (t: BinaryTuple) => void,
  ) {
    this.reader = new BinaryCopyReader((t) => {
      if (this.failure !== undefined) return;
      try {
        onTuple(t);
      } catch (err) {
        this.failure = err;
      }
    });
    this.done = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Returns an error for pg to fail the query with, as pg's submittables do. */
  submit(connection: pg.Connection): Error | undefined {
    const refused = this.tap.take(connection);
    if (refused) return refused;
    connection.query(this.text);
    return undefined;
  }

  handleCommandComplete(): void {}

  // A statement that is not a COPY TO: refused when it ends.
  handleRowDescription(): void {
    this.failure ??= new Error('binaryCopyOut runs a COPY TO statement; this one returns rows');
  }

  handleDataRow(): void {}

  handleEmptyQuery(): void {
    this.failure ??= new Error('binaryCopyOut was given an empty statement');
  }

  handleCopyInResponse(connection: pg.Connection & { sendCopyFail(message: string): void }): void {
    this.failure ??= new Error('binaryCopyOut runs a COPY TO statement, not a COPY FROM');
    connection.sendCopyFail('binaryCopyOut reads, it does not write');
  }

  handleReadyForQuery(): void {
    if (this.failure !== undefined) return this.reject(this.failure);
    try {
      this.resolve(this.reader.end());
    } catch (err) {
      this.reject(err);
    }
  }

  handleError(err: Error): void {
    this.tap.giveBack();
    this.reject(this.failure ?? err);
  }
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
