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

/** Backend message types met during a COPY TO (https://www.postgresql.org/docs/current/protocol-message-formats.html). */
const COPY_OUT_RESPONSE = 0x48; // 'H'
const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
/** May come between any two messages; nothing for the COPY to act on. */
const INTERSPERSED = new Set([0x4e /* 'N' NoticeResponse */, 0x53 /* 'S' ParameterStatus */, 0x41 /* 'A' NotificationResponse */]);

type OnData = (chunk: Buffer) => void;

class BinaryCopyOut implements pg.Submittable {
  readonly done: Promise<number>;
  private resolve!: (rows: number) => void;
  private reject!: (err: unknown) => void;
  private readonly reader: BinaryCopyReader;
  /** What went wrong on this side: onTuple threw (the COPY is read to its end, unseen), or the stream was malformed. */
  private failure: unknown;
  private stream: pg.Connection['stream'] | undefined;
  private pgOnData: OnData | undefined;
  /** A message's type and length when a chunk ends inside them: the first `headLength` of their 5 bytes. */
  private readonly head = Buffer.alloc(5);
  private headLength = 0;
  /** The current message's type, and how many of its payload's bytes are still to come. */
  private type = 0;
  private remaining = 0;

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
    const stream = connection.stream;
    const listeners = stream.listeners('data') as OnData[];
    if (listeners.length !== 1) return new Error(`a COPY TO expects pg's one data listener on its socket, found ${listeners.length}`);
    this.stream = stream;
    this.pgOnData = listeners[0] as OnData;
    stream.removeListener('data', this.pgOnData);
    stream.on('data', this.onData);
    connection.query(this.text);
    return undefined;
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.consume(chunk);
    } catch (err) {
      // A malformed stream: the connection cannot be trusted.
      this.failure ??= err;
      const stream = this.stream;
      this.giveBack(Buffer.alloc(0));
      stream?.destroy(err as Error);
    }
  };

  /** Reads the chunk's messages while they belong to the COPY; the rest goes back to pg. */
  private consume(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.remaining === 0 && this.type === 0) {
        // A message's type (1 byte) and length (4, itself included), perhaps split between chunks.
        let head = chunk;
        let headAt = at;
        const had = this.headLength;
        if (had > 0 || chunk.length - at < 5) {
          const n = Math.min(5 - had, chunk.length - at);
          chunk.copy(this.head, had, at, at + n);
          this.headLength += n;
          if (this.headLength < 5) return;
          head = this.head;
          headAt = 0;
        }
        const type = head[headAt] as number;
        if (type !== COPY_DATA && type !== COPY_OUT_RESPONSE && type !== COPY_DONE && !INTERSPERSED.has(type)) {
          // CommandComplete, ReadyForQuery, an ErrorResponse: pg's from here on.
          this.giveBack(had > 0 ? Buffer.concat([this.head.subarray(0, had), chunk.subarray(at)]) : chunk.subarray(at));
          return;
        }
        at += 5 - had;
        this.headLength = 0;
        this.type = type;
        this.remaining = head.readInt32BE(headAt + 1) - 4;
      }
      const n = Math.min(this.remaining, chunk.length - at);
      if (this.type === COPY_DATA) this.reader.feed(chunk, at, at + n);
      at += n;
      this.remaining -= n;
      if (this.remaining === 0) {
        const type = this.type;
        this.type = 0;
        if (type === COPY_DONE) {
          this.giveBack(chunk.subarray(at));
          return;
        }
      }
    }
  }

  /** pg's parser reads the socket again, starting with `rest`. */
  private giveBack(rest: Buffer): void {
    const stream = this.stream;
    const pgOnData = this.pgOnData;
    if (!stream || !pgOnData) return;
    this.stream = undefined;
    this.pgOnData = undefined;
    stream.removeListener('data', this.onData);
    stream.on('data', pgOnData);
    if (rest.length > 0) pgOnData(rest);
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
    this.giveBack(Buffer.alloc(0));
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
