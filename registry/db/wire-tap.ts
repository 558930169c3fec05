/**
 * Backend messages read straight off a pg connection's socket, for the two readers
 * that decode rows in place (a binary COPY TO, copy-out.ts; a prepared statement's
 * binary rows, binary-rows.ts): while a query runs, the tap takes the socket's 'data'
 * listener from pg, hands the payload of each message it claims to its reader as the
 * bytes arrive (a message split between chunks arrives in pieces), and gives the
 * socket back to pg's own parser at the first message it does not claim (the query's
 * end, an error), that message included. pg then completes or fails the query the
 * usual way. TupleQuery is what the two readers share as pg queries.
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import type pg from 'pg';
import { BinaryCopyReader, type BinaryTuple } from './binary-copy.ts';

/** May come between any two messages: NoticeResponse, ParameterStatus, NotificationResponse. A tap claims and drops them. */
const INTERSPERSED = new Set([0x4e /* 'N' */, 0x53 /* 'S' */, 0x41 /* 'A' */]);

type OnData = (chunk: Buffer) => void;

export interface WireReader {
  /** Whether messages of this type are read here; the first that is not gives the socket back. */
  claims(type: number): boolean;
  /** The next bytes `buf[start, end)` of a claimed message's payload. */
  payload(type: number, buf: Buffer, start: number, end: number): void;
  /** A claimed message has ended: true gives the socket back after it. */
  ended(type: number): boolean;
  /** The stream was malformed (or the reader threw): the connection is destroyed. */
  broken(err: unknown): void;
}

export class WireTap {
  private stream: pg.Connection['stream'] | undefined;
  private pgOnData: OnData | undefined;
  /** A message's type and length when a chunk ends inside them: the first `headLength` of their 5 bytes. */
  private readonly head = Buffer.alloc(5);
  private headLength = 0;
  /** The current message's type (0: between messages), and how many of its payload's bytes are still to come. */
  private type = 0;
  private remaining = 0;

  constructor(private readonly reader: WireReader) {}

  /** Takes the socket from pg; an Error (for pg to fail the query with) when it cannot. */
  take(connection: pg.Connection): Error | undefined {
    const stream = connection.stream;
    const listeners = stream.listeners('data') as OnData[];
    if (listeners.length !== 1) return new Error(`reading a query's messages expects pg's one data listener on its socket, found ${listeners.length}`);
    this.stream = stream;
    this.pgOnData = listeners[0] as OnData;
    stream.removeListener('data', this.pgOnData);
    stream.on('data', this.onData);
    return undefined;
  }

  /** pg's parser reads the socket again, starting with `rest` (nothing once given back). */
  giveBack(rest: Buffer = Buffer.alloc(0)): void {
    const stream = this.stream;
    const pgOnData = this.pgOnData;
    if (!stream || !pgOnData) return;
    this.stream = undefined;
    this.pgOnData = undefined;
    stream.removeListener('data', this.onData);
    stream.on('data', pgOnData);
    if (rest.length > 0) pgOnData(rest);
  }

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.consume(chunk);
    } catch (err) {
      // A malformed stream: the connection cannot be trusted.
      this.reader.broken(err);
      const stream = this.stream;
      this.giveBack();
      stream?.destroy(err as Error);
    }
  };

  /** Reads the chunk's messages while they are claimed; the rest goes back to pg. */
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
        if (!this.reader.claims(type)) {
          this.giveBack(had > 0 ? Buffer.concat([this.head.subarray(0, had), chunk.subarray(at)]) : chunk.subarray(at));
          return;
        }
        at += 5 - had;
        this.headLength = 0;
        this.type = type;
        this.remaining = head.readInt32BE(headAt + 1) - 4;
      }
      const n = Math.min(this.remaining, chunk.length - at);
      if (n > 0) this.reader.payload(this.type, chunk, at, at + n);
      at += n;
      this.remaining -= n;
      if (this.remaining === 0) {
        const type = this.type;
        this.type = 0;
        if (this.reader.ended(type)) {
          this.giveBack(chunk.subarray(at));
          return;
        }
      }
    }
  }
}

/**
 * A pg query whose rows arrive as binary tuples in messages of one type (`tuples`),
 * read off the socket by a WireTap: `done` gives their number once the query ends.
 * onTuple's first error, a malformed stream or a refused statement fail it only then,
 * once the rest has been read unseen, so the connection stays usable. Subclasses send
 * the query (`submit`), say which other messages they read and drop (`alsoClaims`) and
 * after which one the socket goes back to pg (`givesBackAfter`).
 *
 * It is its tap's reader itself, with methods rather than closures: the prediction
 * server makes one per lookup, and run through tsx (keepNames) each named closure made
 * is wrapped in __name, which gives it a property of its own.
 */
export abstract class TupleQuery implements pg.Submittable, WireReader {
  readonly done: Promise<number>;
  protected readonly tap: WireTap;
  private resolve!: (rows: number) => void;
  private reject!: (err: unknown) => void;
  private readonly reader: BinaryCopyReader;
  /** The type of the messages the tuples arrive in. */
  private readonly tuples: number;
  /** Why the query fails once it ends (the first reason wins). */
  private failure: unknown;

  /** `name` names the reader in its errors; `bare`: the tuples have no COPY header or trailer. */
  constructor(
    protected readonly name: string,
    tuples: number,
    onTuple: (t: BinaryTuple) => void,
    options: { bare?: boolean } = {},
  ) {
    this.reader = new BinaryCopyReader((t) => {
      if (this.failure !== undefined) return;
      try {
        onTuple(t);
      } catch (err) {
        this.failure = err;
      }
    }, options);
    this.tuples = tuples;
    this.tap = new WireTap(this);
    this.done = new Promise<number>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Sends the query; an Error for pg to fail it with, as pg's submittables do. */
  abstract submit(connection: pg.Connection): Error | undefined;

  /** Messages besides the tuples (and interspersed ones) that are read here and dropped. */
  protected abstract alsoClaims(type: number): boolean;

  /** A claimed message has ended: true gives the socket back to pg after it. */
  protected abstract givesBackAfter(type: number): boolean;

  // The tap's reader (WireReader).
  claims(type: number): boolean {
    return type === this.tuples || INTERSPERSED.has(type) || this.alsoClaims(type);
  }

  payload(type: number, buf: Buffer, start: number, end: number): void {
    if (type === this.tuples) this.reader.feed(buf, start, end);
  }

  ended(type: number): boolean {
    return this.givesBackAfter(type);
  }

  broken(err: unknown): void {
    this.refuse(err);
  }

  /** Fails the query with `err` once it ends. */
  protected refuse(err: unknown): void {
    this.failure ??= err;
  }

  handleCommandComplete(): void {}

  handleEmptyQuery(): void {
    this.refuse(new Error(`${this.name} was given an empty statement`));
  }

  handleCopyInResponse(connection: pg.Connection & { sendCopyFail(message: string): void }): void {
    this.refuse(new Error(`${this.name} reads rows, not a COPY FROM`));
    connection.sendCopyFail(`${this.name} reads, it does not write`);
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
