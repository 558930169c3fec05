/**
 * Postgres' binary COPY format, read and written a tuple at a time without decoding
 * values: a field is its bytes as Postgres sent them, so a value read from one COPY
 * can be written into another unchanged, whatever its type. Only the fields a caller
 * needs to look at are decoded (text, int4, float8, timestamptz), and a writer encodes
 * the values it computes (text, float8, int8, timestamptz). The format: a signature,
 * flags and a header extension, then per tuple an int16 field count and per field an
 * int32 length (-1: null) and that many bytes; an int16 -1 ends it.
 * https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4
 */
import type { Column, ColumnArrays, ColumnBatch, NumberColumn, NumberColumnType, TextColumn } from '../../core/columns.ts';

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** Signature, int32 flags (0), int32 header extension length (0). */
const BINARY_COPY_HEADER = Buffer.concat([SIGNATURE, Buffer.alloc(8)]);
/** The int16 -1 that ends the tuples. */
const BINARY_COPY_TRAILER = Buffer.from([0xff, 0xff]);
/** jsonb's binary form begins with its version, 1. */
const JSONB_VERSION = Buffer.from([1]);

/** Microseconds between 1970-01-01 and Postgres' epoch, 2000-01-01 (timestamps count from it). */
const PG_EPOCH_US = 946_684_800_000_000;

/**
 * One tuple of a binary COPY, valid only during the callback that receives it: field i
 * is `buf[start[i], start[i] + length[i])`, or null when `length[i]` is -1.
 */
export interface BinaryTuple {
  buf: Buffer;
  fields: number;
  start: Int32Array;
  length: Int32Array;
}

/** Field i as UTF-8 text, or null. */
export function textField(t: BinaryTuple, i: number): string | null {
  const n = t.length[i] as number;
  return n < 0 ? null : t.buf.toString('utf8', t.start[i], (t.start[i] as number) + n);
}

/** Field i, an int4, or null. */
export function int4Field(t: BinaryTuple, i: number): number | null {
  return (t.length[i] as number) < 0 ? null : int32(t.buf, t.start[i] as number);
}

/** Field i's bytes, copied (they outlive the tuple), or null. */
export function fieldBytes(t: BinaryTuple, i: number): Buffer | null {
  const n = t.length[i] as number;
  return n < 0 ? null : Buffer.from(t.buf.subarray(t.start[i] as number, (t.start[i] as number) + n));
}

/**
 * Whether field i holds `bytes` (null: is null; undefined: never), compared byte by
 * byte: rows in key order repeat a key, and this spares decoding it on every row.
 */
export function fieldEquals(t: BinaryTuple, i: number, bytes: Buffer | null | undefined): boolean {
  const n = t.length[i] as number;
  if (n < 0 || bytes === null || bytes === undefined) return n < 0 && bytes === null;
  if (bytes.length !== n) return false;
  const start = t.start[i] as number;
  for (let k = 0; k < n; k++) if (t.buf[start + k] !== bytes[k]) return false;
  return true;
}

/** Field i, a double precision, or null. */
export function float8Field(t: BinaryTuple, i: number): number | null {
  return (t.length[i] as number) < 0 ? null : t.buf.readDoubleBE(t.start[i] as number);
}

/**
 * Field i, a timestamptz, as microseconds since 1970 (exact below 2^53 µs: until year
 * 2255), or null; ±infinity come out as huge values of the same sign.
 */
export function timestampField(t: BinaryTuple, i: number): number | null {
  return (t.length[i] as number) < 0 ? null : microseconds(t.buf, t.start[i] as number);
}

/**
 * Where field i's bytes begin in `t.buf`, its length included: fields [i, j) are
 * `buf[fieldStart(t, i), fieldEnd(t, j - 1))`, the bytes a writer copies unchanged.
 */
export function fieldStart(t: BinaryTuple, i: number): number {
  return (t.start[i] as number) - 4;
}

/** Where field i's bytes end in `t.buf`. */
export function fieldEnd(t: BinaryTuple, i: number): number {
  return (t.start[i] as number) + Math.max(0, t.length[i] as number);
}

/**
 * Copies `source[start, end)` to `target` at `at`. Buffer.copy costs about half a
 * microsecond a call whatever the size; a loop is faster for the few dozen bytes of a
 * tuple's fields.
 */
export function copyBytes(source: Buffer, start: number, end: number, target: Buffer, at: number): void {
  if (end - start > 32) {
    source.copy(target, at, start, end);
    return;
  }
  for (let i = start; i < end; i++) target[at++] = source[i] as number;
}

/** Copies up to this many bytes 4 at a time through DataViews (copyThrough); more by Buffer.copy. */
const COPY_THROUGH_MAX = 1024;

/**
 * copyBytes for a hot loop that has both buffers' DataViews at hand (DataViews keeps
 * them): 4 bytes a step through the views, no object made. Buffer.copy (Node 20) makes
 * a Uint8Array of the source's range on every call, which the young generation then
 * collects: about 125 ns a 100-byte copy with its garbage, against 45-70 ns this way.
 * The views read and write with the same byte order, so the bytes land as they were.
 */
export function copyThrough(source: Buffer, sourceView: DataView, start: number, end: number, target: Buffer, targetView: DataView, at: number): void {
  const n = end - start;
  if (n > COPY_THROUGH_MAX) {
    source.copy(target, at, start, end);
    return;
  }
  let i = 0;
  for (; i + 4 <= n; i += 4) targetView.setInt32(at + i, sourceView.getInt32(start + i));
  for (; i < n; i++) target[at + i] = source[start + i] as number;
}

/**
 * The DataViews of the last two buffers asked for (dataViewOf), for copyThrough's
 * callers, whose copies come in runs from one buffer (a piece of a COPY, a segment),
 * or from two read side by side (a join's seeds and its segments).
 */
export class DataViews {
  private last: Buffer | undefined;
  private lastView: DataView | undefined;
  private other: Buffer | undefined;
  private otherView: DataView | undefined;

  of(buf: Buffer): DataView {
    if (buf === this.last) return this.lastView as DataView;
    const view = buf === this.other ? (this.otherView as DataView) : dataViewOf(buf);
    this.other = this.last;
    this.otherView = this.lastView;
    this.last = buf;
    this.lastView = view;
    return view;
  }
}

/** A big-endian int32 at `at` (bounds are the caller's: it checks lengths first). */
function int32(buf: Buffer, at: number): number {
  return ((buf[at] as number) << 24) | ((buf[at + 1] as number) << 16) | ((buf[at + 2] as number) << 8) | (buf[at + 3] as number);
}

/**
 * Parses the bytes of a binary COPY, fed in pieces of any size, into tuples, in order:
 * a tuple that lies within one piece is handed out in place (`onTuple` must copy what
 * it keeps); one split between two pieces is completed from the start of the next
 * (only as many bytes as it needs are copied).
 */
export class BinaryCopyReader {
  /** Tuples handed out so far. */
  count = 0;
  private done = false;
  private headerRead = false;
  private pending: Buffer | undefined;
  private readonly tuple: BinaryTuple = { buf: Buffer.alloc(0), fields: 0, start: new Int32Array(64), length: new Int32Array(64) };

  /**
   * `bare`: tuples only, with no header or trailer, as the DataRow messages of a
   * statement's binary results carry them (binary-rows.ts): each payload is one tuple.
   */
  constructor(
    private readonly onTuple: (t: BinaryTuple) => void,
    private readonly options: { bare?: boolean } = {},
  ) {
    this.headerRead = options.bare === true;
  }

  /** Parses `buf[start, end)`, the next bytes of the COPY. */
  feed(buf: Buffer, start: number, end: number): void {
    let at = start;
    if (this.pending) {
      const pending = this.pending;
      // Complete the split tuple from this piece's first bytes (a few KiB, unless it is bigger).
      const take = Math.min(end - at, 8192);
      const head = Buffer.concat([pending, buf.subarray(at, at + take)]);
      const stop = this.parse(head, 0, head.length);
      if (stop < pending.length) {
        // Longer than that: keep all of it for the next piece (rare: a tuple of many KiB).
        this.pending = Buffer.concat([head.subarray(stop), buf.subarray(at + take, end)]);
        return;
      }
      at += stop - pending.length;
      this.pending = undefined;
    }
    const stop = this.parse(buf, at, end);
    if (stop < end) this.pending = Buffer.from(buf.subarray(stop, end));
  }

  /** The number of tuples, once the trailer has been read (bare: once no tuple is left incomplete); throws if it has not. */
  end(): number {
    if (this.options.bare ? this.pending !== undefined : !this.done) throw new Error('binary COPY stream ended early');
    return this.count;
  }

  /** Parses the complete tuples of `buf[at, end)`; returns where the first incomplete one starts. */
  private parse(buf: Buffer, at: number, end: number): number {
    if (!this.headerRead) {
      const fixed = SIGNATURE.length + 8;
      if (end - at < fixed) return at;
      if (!buf.subarray(at, at + SIGNATURE.length).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
      const header = fixed + buf.readInt32BE(at + SIGNATURE.length + 4);
      if (end - at < header) return at;
      at += header;
      this.headerRead = true;
    }
    const tuple = this.tuple;
    tuple.buf = buf;
    while (!this.done && at + 2 <= end) {
      const fields = ((buf[at] as number) << 8) | (buf[at + 1] as number);
      if (fields === 0xffff) {
        this.done = true;
        return at + 2;
      }
      if (fields > tuple.start.length) {
        tuple.start = new Int32Array(fields);
        tuple.length = new Int32Array(fields);
      }
      let p = at + 2;
      let i = 0;
      for (; i < fields; i++) {
        if (p + 4 > end) break;
        const n = int32(buf, p);
        p += 4;
        tuple.start[i] = p;
        tuple.length[i] = n;
        if (n > 0) p += n;
        if (p > end) break;
      }
      if (i < fields) return at;
      tuple.fields = fields;
      this.onTuple(tuple);
      this.count++;
      at = p;
    }
    return at;
  }
}

/** Bytes for a binary COPY FROM, gathered into large chunks: header first, then tuples, then the trailer. */
/** Where a writer takes its next chunk from before it allocates one: chunks a COPY has sent (copy-in.ts). */
export interface ChunkSource {
  /** A chunk of `size` bytes that nothing holds any more, if there is one. */
  take(size: number): Buffer | undefined;
}

export class BinaryCopyWriter {
  private chunk: Buffer;
  /** The chunk's bytes for the typed fields' writes (a DataView's are inlined; Buffer's write methods are calls). */
  private view: DataView;
  private at = 0;
  /** Where the open field's length goes (openField). */
  private fieldAt = 0;
  private readonly full: Buffer[] = [];

  constructor(
    private readonly chunkSize = 1 << 20,
    private readonly source?: ChunkSource,
  ) {
    this.chunk = source?.take(chunkSize) ?? Buffer.allocUnsafe(chunkSize);
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length);
    this.write(BINARY_COPY_HEADER);
  }

  /** Starts a tuple of `fields` fields; its fields follow as `write`s of their bytes (length included). */
  tuple(fields: number): void {
    this.reserve(2);
    this.view.setInt16(this.at, fields);
    this.at += 2;
  }

  /** Writes `buf[start, end)`. */
  writeRange(buf: Buffer, start: number, end: number): void {
    const n = end - start;
    if (n > this.chunkSize) return this.write(buf.subarray(start, end));
    this.reserve(n);
    copyBytes(buf, start, end, this.chunk, this.at);
    this.at += n;
  }

  /**
   * Writes `buf[start, end)` through `view` (buf's DataView: see copyThrough), for a hot
   * loop of small copies from buffers whose views it keeps: no object made a copy.
   */
  writeRangeThrough(buf: Buffer, view: DataView, start: number, end: number): void {
    const n = end - start;
    if (n > this.chunkSize) return this.write(buf.subarray(start, end));
    this.reserve(n);
    copyThrough(buf, view, start, end, this.chunk, this.view, this.at);
    this.at += n;
  }

  /** A null field. */
  nullField(): void {
    this.reserve(4);
    this.view.setInt32(this.at, -1);
    this.at += 4;
  }

  /** A field of these bytes (a text's UTF-8, say). */
  bytesField(bytes: Buffer): void {
    this.reserve(4 + bytes.length);
    this.view.setInt32(this.at, bytes.length);
    this.at += 4;
    this.writeRange(bytes, 0, bytes.length);
  }

  /** A double precision field. */
  float8(value: number): void {
    this.reserve(12);
    this.view.setInt32(this.at, 8);
    this.view.setFloat64(this.at + 4, value);
    this.at += 12;
  }

  /** A bigint field (an integer below 2^53 in magnitude). */
  int8(value: number): void {
    this.reserve(12);
    const high = Math.floor(value / 4_294_967_296);
    this.view.setInt32(this.at, 8);
    this.view.setInt32(this.at + 4, high);
    this.view.setUint32(this.at + 8, value - high * 4_294_967_296);
    this.at += 12;
  }

  /** An integer field (int4). */
  int4(value: number): void {
    this.reserve(8);
    this.view.setInt32(this.at, 4);
    this.view.setInt32(this.at + 4, value);
    this.at += 8;
  }

  /** A jsonb field from JSON text (jsonb's binary form: a version byte, 1, then the text). */
  jsonb(json: string): void {
    const most = 5 + 3 * json.length;
    if (most > this.chunkSize) return this.bytesField(Buffer.concat([JSONB_VERSION, Buffer.from(json, 'utf8')]));
    this.reserve(most);
    this.chunk[this.at + 4] = 1;
    const length = this.chunk.write(json, this.at + 5, 'utf8');
    this.view.setInt32(this.at, length + 1);
    this.at += 5 + length;
  }

  /**
   * Starts a field whose bytes follow (append…) until closeField() writes its length;
   * `most` bounds those bytes: they must fit in one chunk.
   */
  openField(most: number): void {
    if (!this.fits(most)) throw new Error(`a field of up to ${most} bytes does not fit a chunk of ${this.chunkSize}`);
    this.reserve(4 + most);
    this.fieldAt = this.at;
    this.at += 4;
  }

  /** Whether a field of up to `most` bytes can be written with openField. */
  fits(most: number): boolean {
    return 4 + most <= this.chunkSize;
  }

  /** The open field's next bytes. */
  appendBytes(bytes: Buffer): void {
    copyBytes(bytes, 0, bytes.length, this.chunk, this.at);
    this.at += bytes.length;
  }

  /** The open field's next byte. */
  appendByte(byte: number): void {
    this.chunk[this.at++] = byte;
  }

  /** A safe integer's decimal digits (as JSON and String() print it), into the open field. */
  appendInteger(value: number): void {
    if (value < 0) this.chunk[this.at++] = 45; // '-'
    this.at = printDigits(this.chunk, this.at, Math.abs(value));
  }

  /** A string's UTF-8 (at most 3 bytes a UTF-16 unit: count them in `most`), into the open field. */
  appendUtf8(value: string): void {
    this.at += this.chunk.write(value, this.at, 'utf8');
  }

  closeField(): void {
    this.view.setInt32(this.fieldAt, this.at - this.fieldAt - 4);
  }

  /** A boolean field. */
  bool(value: boolean): void {
    this.reserve(5);
    this.view.setInt32(this.at, 1);
    this.chunk[this.at + 4] = value ? 1 : 0;
    this.at += 5;
  }

  /** A text field: the string's UTF-8, written straight into the chunk. */
  text(value: string): void {
    // UTF-8 takes at most 3 bytes per UTF-16 unit.
    const most = 4 + 3 * value.length;
    if (most > this.chunkSize) return this.bytesField(Buffer.from(value, 'utf8'));
    this.reserve(most);
    const length = this.chunk.write(value, this.at + 4, 'utf8');
    this.view.setInt32(this.at, length);
    this.at += 4 + length;
  }

  /** A timestamptz field, from microseconds since 1970. */
  timestamptz(us: number): void {
    this.int8(us - PG_EPOCH_US);
  }

  write(bytes: Buffer): void {
    if (bytes.length > this.chunkSize) {
      this.flush();
      this.full.push(Buffer.from(bytes));
      return;
    }
    this.reserve(bytes.length);
    bytes.copy(this.chunk, this.at);
    this.at += bytes.length;
  }

  /** The chunks completed so far (taken: the writer forgets them). */
  take(): Buffer[] {
    return this.full.splice(0);
  }

  /** Ends the COPY: the trailer, and every remaining chunk. */
  end(): Buffer[] {
    this.write(BINARY_COPY_TRAILER);
    this.flush();
    return this.take();
  }

  private reserve(n: number): void {
    if (this.at + n > this.chunkSize) this.flush();
  }

  private flush(): void {
    if (this.at === 0) return;
    this.full.push(this.chunk.subarray(0, this.at));
    this.chunk = this.source?.take(this.chunkSize) ?? Buffer.allocUnsafe(this.chunkSize);
    this.view = new DataView(this.chunk.buffer, this.chunk.byteOffset, this.chunk.length);
    this.at = 0;
  }
}

/** The bytes of `count` null fields. */
export function nullFields(count: number): Buffer {
  return Buffer.alloc(4 * count, 0xff);
}

/** How decoders give timestamps: as Dates (to the millisecond), or as microseconds since 1970. */
export interface DecoderOptions {
  timestamps?: 'date' | 'micros';
}

/** A field's value from its bytes `buf[at, at + length)` (never called for a null). */
export type FieldDecoder = (buf: Buffer, at: number, length: number) => unknown;

/**
 * The decoder of a binary field of one of the types the feature store writes, giving
 * what the row readers give for its text (registry/db: bigint as a number, timestamps
 * as Dates, or with `timestamps: 'micros'` as microseconds since 1970, exact, for rows
 * whose times only travel on to a binary COPY).
 */
export function fieldDecoder(pgType: string, options: DecoderOptions = {}): FieldDecoder {
  const decoder = binaryDecoder(pgType, options);
  if (!decoder) throw new Error(`no binary decoder for Postgres type ${pgType}`);
  return decoder;
}

/** How a field of each Postgres type the feature store writes is read (binaryDecoder, ColumnDecoder). */
const FieldKind = { Float8: 0, Int8: 1, Int4: 2, Int2: 3, Bool: 4, Time: 5, Text: 6 } as const;
type FieldKind = (typeof FieldKind)[keyof typeof FieldKind];

const FIELD_KINDS: Readonly<Record<string, { kind: FieldKind; type: Column['type'] }>> = {
  'double precision': { kind: FieldKind.Float8, type: 'float' },
  bigint: { kind: FieldKind.Int8, type: 'int' },
  integer: { kind: FieldKind.Int4, type: 'int' },
  smallint: { kind: FieldKind.Int2, type: 'int' },
  boolean: { kind: FieldKind.Bool, type: 'bool' },
  timestamptz: { kind: FieldKind.Time, type: 'time' },
  'timestamp with time zone': { kind: FieldKind.Time, type: 'time' },
  text: { kind: FieldKind.Text, type: 'text' },
};

/** How a field of `pgType` is read; undefined for a type the feature store does not write. */
function fieldKind(pgType: string): { kind: FieldKind; type: Column['type'] } | undefined {
  return Object.hasOwn(FIELD_KINDS, pgType) ? FIELD_KINDS[pgType] : undefined;
}

/** fieldDecoder's decoder, or undefined for a type it has none for (the type as format_type prints it, or timestamptz). */
export function binaryDecoder(pgType: string, options: DecoderOptions = {}): FieldDecoder | undefined {
  switch (fieldKind(pgType)?.kind) {
    case FieldKind.Float8:
      return (buf, at) => buf.readDoubleBE(at);
    case FieldKind.Int8:
      return int64;
    case FieldKind.Int4:
      return (buf, at) => buf.readInt32BE(at);
    case FieldKind.Int2:
      return (buf, at) => buf.readInt16BE(at);
    case FieldKind.Bool:
      return (buf, at) => buf[at] !== 0;
    case FieldKind.Text:
      return (buf, at, length) => buf.toString('utf8', at, at + length);
    case FieldKind.Time:
      return options.timestamps === 'micros' ? microseconds : (buf, at) => new Date(Math.floor(microseconds(buf, at) / 1000));
    default:
      return undefined;
  }
}

/**
 * A row with every one of `names` (null), to copy (`{ ...template }`) for each decoded
 * row: the copy gets all its properties at once, in the same order, so decodeFields
 * fills them with plain stores. Rows built property by property took about an eighth
 * longer to decode (a partition of the flights dataset's train split, 22 fields, from
 * memory: 4.7–5.0 s against 4.1–4.4 s, three runs each).
 */
export function rowTemplate(names: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(names.map((n) => [n, null]));
}

/**
 * Decodes the consecutive fields in `buf[start, end)` (each an int32 length, -1 for
 * null, then its bytes) into `row[names[first + i]]` with `decoders[first + i]`;
 * returns the index after the last one.
 */
export function decodeFields(buf: Buffer, start: number, end: number, decoders: readonly FieldDecoder[], names: readonly string[], row: Record<string, unknown>, first: number): number {
  let i = first;
  for (let at = start; at < end; i++) {
    const n = int32(buf, at);
    at += 4;
    row[names[i] as string] = n < 0 ? null : (decoders[i] as FieldDecoder)(buf, at, n);
    if (n > 0) at += n;
  }
  return i;
}

/** Fields of at most this many bytes have a number of their own (shortBytesCode). */
export const SHORT_BYTES = 6;

/**
 * The bytes `buf[start, start + length)` (length ≤ SHORT_BYTES) as a number: the length,
 * then the bytes, so distinct byte strings get distinct numbers (below 2^51). A lookup by
 * it needs no string made per row.
 */
export function shortBytesCode(buf: Buffer, start: number, length: number): number {
  let code = length;
  for (let k = start; k < start + length; k++) code = code * 256 + (buf[k] as number);
  return code;
}

/**
 * Non-negative integers (ids, places) by the code of short bytes (shortBytesCode), in an
 * open-addressed table of typed arrays: join keys' ids (KeyIds), decoded texts'
 * places (ShortTexts). A Map keyed by such a code took about 130 ns a
 * lookup where it was hit once a row (a training dataset's train split counting its
 * categories: a third of the statistics' time): the lookup's compiled code could not
 * count on a small integer (codes reach 2^51), so it boxed and hashed a double.
 */
export class ShortCodeIds {
  private codes: Float64Array;
  private ids: Int32Array;
  private shift: number;
  private size = 0;

  constructor() {
    this.codes = new Float64Array(64).fill(-1);
    this.ids = new Int32Array(64);
    this.shift = 32 - 6;
  }

  /** The id kept for `code`, or -1. */
  get(code: number): number {
    const { codes } = this;
    const mask = codes.length - 1;
    for (let slot = this.slotOf(code); ; slot = (slot + 1) & mask) {
      const c = codes[slot] as number;
      if (c === code) return this.ids[slot] as number;
      if (c < 0) return -1;
    }
  }

  /** Keeps `id` for `code`, which has none yet. */
  set(code: number, id: number): void {
    if ((this.size + 1) * 2 > this.codes.length) this.grow();
    const mask = this.codes.length - 1;
    let slot = this.slotOf(code);
    while ((this.codes[slot] as number) >= 0) slot = (slot + 1) & mask;
    this.codes[slot] = code;
    this.ids[slot] = id;
    this.size++;
  }

  /** A multiplicative hash of the code's low and high 32 bits, its top bits a slot. */
  private slotOf(code: number): number {
    return Math.imul((code >>> 0) ^ Math.floor(code / 0x1_0000_0000), 0x9e3779b1) >>> this.shift;
  }

  private grow(): void {
    const { codes, ids } = this;
    this.codes = new Float64Array(codes.length * 2).fill(-1);
    this.ids = new Int32Array(codes.length * 2);
    this.shift--;
    this.size = 0;
    codes.forEach((code, slot) => {
      if (code >= 0) this.set(code, ids[slot] as number);
    });
  }
}

/** Distinct short texts kept per thread (ShortTexts): an airport code, a country, a status. */
const SHORT_TEXTS_KEPT = 1 << 16;

/**
 * Text fields of a few bytes as strings, each made once per distinct bytes and then
 * shared: a month of flights has 508k origins among a few hundred airports, and a
 * string made per row (utf8Slice, then the collector) was about a tenth of a reader
 * thread's time. The same bytes always decode to the same string, so sharing it
 * changes no value. At most SHORT_TEXTS_KEPT are kept; past that each is made anew.
 */
class ShortTexts {
  /** Each kept text's place in `texts`, by its bytes' code. */
  private readonly byCode = new ShortCodeIds();
  private readonly texts: string[] = [];

  text(buf: Buffer, start: number, length: number): string {
    if (length > SHORT_BYTES) return buf.toString('utf8', start, start + length);
    const code = shortBytesCode(buf, start, length);
    const kept = this.byCode.get(code);
    if (kept >= 0) return this.texts[kept] as string;
    const text = buf.toString('utf8', start, start + length);
    if (this.texts.length < SHORT_TEXTS_KEPT) this.byCode.set(code, this.texts.push(text) - 1);
    return text;
  }
}

/** This thread's short texts (a worker thread has its own module instance). */
const shortTexts = new ShortTexts();

/**
 * Binary fields decoded into the columns of a ColumnBatch (core/columns.ts) of `size`
 * rows, with no object per row: decodeFields's values (timestamps as microseconds),
 * typed. The columns are the `columns`' in order, by Postgres type (fieldDecoder's);
 * number columns' arrays come from `arrays` when given (every row of them is written).
 */
export class ColumnDecoder {
  private readonly kinds: FieldKind[];
  private readonly numbers: Array<NumberColumn | undefined>;
  private readonly texts: Array<TextColumn | undefined>;
  readonly batch: ColumnBatch;

  constructor(columns: ReadonlyArray<{ name: string; pgType: string }>, size: number, arrays?: ColumnArrays) {
    const made = columns.map((c): Column => {
      const field = fieldKind(c.pgType);
      if (!field) throw new Error(`no binary decoder for Postgres type ${c.pgType}`);
      if (field.type === 'text') return { type: 'text', values: new Array<string | null>(size).fill(null) };
      return { type: field.type as NumberColumnType, ...(arrays ? arrays.take(size) : { values: new Float64Array(size), nulls: new Uint8Array(size) }) };
    });
    this.kinds = columns.map((c) => (fieldKind(c.pgType) as { kind: FieldKind }).kind);
    this.numbers = made.map((c) => (c.type === 'text' || c.type === 'value' ? undefined : c));
    this.texts = made.map((c) => (c.type === 'text' ? c : undefined));
    this.batch = { size, columns: new Map(columns.map((c, i) => [c.name, made[i] as Column])) };
  }

  /**
   * Decodes the consecutive fields in `buf[start, end)` into row `row` from column
   * `first` on; returns the index after the last. `view` is a DataView of `buf`
   * (dataViewOf): its reads take about 3 ns where Buffer's readDoubleBE and
   * readInt32BE took 17–35 (Node 20).
   */
  fields(buf: Buffer, view: DataView, start: number, end: number, row: number, first: number): number {
    let i = first;
    for (let at = start; at < end; i++) {
      const n = view.getInt32(at);
      at += 4;
      if (n < 0) {
        this.setNull(row, i);
        continue;
      }
      const kind = this.kinds[i] as FieldKind;
      if (kind === FieldKind.Text) (this.texts[i] as TextColumn).values[row] = shortTexts.text(buf, at, n);
      else {
        const values = (this.numbers[i] as NumberColumn).values;
        switch (kind) {
          case FieldKind.Float8:
            values[row] = view.getFloat64(at);
            break;
          case FieldKind.Int8:
            values[row] = view.getInt32(at) * 4_294_967_296 + view.getUint32(at + 4);
            break;
          case FieldKind.Int4:
            values[row] = view.getInt32(at);
            break;
          case FieldKind.Int2:
            values[row] = view.getInt16(at);
            break;
          case FieldKind.Bool:
            values[row] = view.getUint8(at) !== 0 ? 1 : 0;
            break;
          case FieldKind.Time:
            values[row] = view.getInt32(at) * 4_294_967_296 + view.getUint32(at + 4) + PG_EPOCH_US;
            break;
        }
      }
      at += n;
    }
    return i;
  }

  /** Row `row` is null in `count` columns from `first` on; returns the index after them. */
  nulls(row: number, first: number, count: number): number {
    for (let i = first; i < first + count; i++) this.setNull(row, i);
    return first + count;
  }

  private setNull(row: number, i: number): void {
    const numbers = this.numbers[i];
    if (numbers) numbers.nulls[row] = 1;
    else (this.texts[i] as TextColumn).values[row] = null;
  }
}

/** A DataView over exactly `buf`'s bytes (ColumnDecoder.fields reads through one). */
export function dataViewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** A big-endian int64 at `at` as a number: exact below 2^53, as the text parser's Number.parseInt. */
function int64(buf: Buffer, at: number): number {
  // Byte by byte: about 14 ns here, against 26–36 for readInt32BE and readUInt32BE (Node 20).
  return int32(buf, at) * 4_294_967_296 + (int32(buf, at + 4) >>> 0);
}

/**
 * Writes `value`'s decimal digits (a whole number below 2^53), at least `width` of them
 * (zeros first), into `bytes` at `at`; returns where they end. Below 2^31 the digits come
 * by int32 arithmetic, not float division and floor: a prediction's entity key is one of
 * these per row (about a sixth of a row's writing), a shuffle key's text one or more.
 */
export function printDigits(bytes: Uint8Array, at: number, value: number, width = 1): number {
  const big = value >= 0x80000000;
  let n = 1;
  if (big) for (let x = value; x >= 10; x = Math.floor(x / 10)) n++;
  else for (let x = value | 0; x >= 10; x = (x / 10) | 0) n++;
  if (n < width) n = width;
  if (big) {
    let x = value;
    for (let i = at + n - 1; i >= at; i--) {
      const q = Math.floor(x / 10);
      bytes[i] = 48 + (x - q * 10);
      x = q;
    }
  } else {
    let x = value | 0;
    for (let i = at + n - 1; i >= at; i--) {
      const q = (x / 10) | 0;
      bytes[i] = 48 + x - q * 10;
      x = q;
    }
  }
  return at + n;
}

/** A timestamptz's bytes at `at` as microseconds since 1970. */
function microseconds(buf: Buffer, at: number): number {
  return int64(buf, at) + PG_EPOCH_US;
}

const DAY_MS = 86_400_000;
const DIGITS2 = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const DIGITS3 = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));
/** The last day printed, and its 'YYYY-MM-DDT': rows come mostly in time order. */
let lastDay = Number.NaN;
let lastDayText = '';

/**
 * Microseconds since 1970 as ISO 8601 UTC text, every digit kept ('…T10:00:00.000123Z';
 * whole milliseconds as Date.toISOString prints them). Built from digit tables, with the
 * date part reused from the last call of the same day: a batch of rows prints millions.
 */
export function timestampText(us: number): string {
  const ms = Math.floor(us / 1000);
  const day = Math.floor(ms / DAY_MS);
  if (day !== lastDay) {
    const iso = new Date(day * DAY_MS).toISOString();
    lastDayText = iso.slice(0, iso.indexOf('T') + 1);
    lastDay = day;
  }
  let rest = ms - day * DAY_MS;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = Math.floor(rest / 1000);
  const micro = us - ms * 1000;
  const fraction = micro === 0 ? DIGITS3[rest - s * 1000] : `${DIGITS3[rest - s * 1000]}${DIGITS3[micro]}`;
  return `${lastDayText}${DIGITS2[h]}:${DIGITS2[m]}:${DIGITS2[s]}.${fraction}Z`;
}
