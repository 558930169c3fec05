/**
 * Postgres's `hashtext` of a text built from binary COPY fields, computed in Node
 * with the same result, bit for bit: so that a value Postgres would compute per row
 * over text it first prints (a training dataset's shuffle key, hashtext of a spine
 * row's keys and time as text) can be computed here from the bytes Postgres sends,
 * sparing it the printing (formatting a timestamp and hashing it took a third of
 * Postgres's time to send a spine).
 *
 * `hashtext` is Bob Jenkins's lookup3 hash (2006; Postgres's hash_bytes) over the
 * text's bytes, read as little-endian words: what Postgres computes on every
 * little-endian machine. Texts as Postgres prints them, with DateStyle ISO:
 *  - bigint: its decimal digits (`::text`);
 *  - text: its bytes, in the server's encoding (UTF-8 here: a caller checks);
 *  - timestamptz `at time zone 'UTC'`, then `::text`: 'YYYY-MM-DD HH:MM:SS', a
 *    fraction of a second only when there is one (trailing zeros dropped), years
 *    below 1000 padded to four digits, years before 1 AD as 'YYYY-MM-DD … BC'.
 */

import { printDigits } from './binary-copy.ts';

const rot = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/** A little-endian uint32 (as an int32) at `at`. */
function word(bytes: Uint8Array, at: number): number {
  return (bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24);
}

/** Postgres's hash_bytes over `bytes[0, length)`, as hashtext returns it (a signed int4). */
export function pgHashBytes(bytes: Uint8Array, length: number): number {
  let a = (0x9e3779b9 + length + 3923095) | 0;
  let b = a;
  let c = a;
  let k = 0;
  let left = length;
  while (left >= 12) {
    a = (a + word(bytes, k)) | 0;
    b = (b + word(bytes, k + 4)) | 0;
    c = (c + word(bytes, k + 8)) | 0;
    // mix(a, b, c)
    a = (a - c) | 0;
    a ^= rot(c, 4);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rot(a, 6);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rot(b, 8);
    b = (b + a) | 0;
    a = (a - c) | 0;
    a ^= rot(c, 16);
    c = (c + b) | 0;
    b = (b - a) | 0;
    b ^= rot(a, 19);
    a = (a + c) | 0;
    c = (c - b) | 0;
    c ^= rot(b, 4);
    b = (b + a) | 0;
    k += 12;
    left -= 12;
  }
  // The last 11 bytes: a from the first four, b the next four, c the rest shifted past its lowest byte (which the length took).
  if (left >= 11) c = (c + ((bytes[k + 10] as number) << 24)) | 0;
  if (left >= 10) c = (c + ((bytes[k + 9] as number) << 16)) | 0;
  if (left >= 9) c = (c + ((bytes[k + 8] as number) << 8)) | 0;
  if (left >= 8) b = (b + ((bytes[k + 7] as number) << 24)) | 0;
  if (left >= 7) b = (b + ((bytes[k + 6] as number) << 16)) | 0;
  if (left >= 6) b = (b + ((bytes[k + 5] as number) << 8)) | 0;
  if (left >= 5) b = (b + (bytes[k + 4] as number)) | 0;
  if (left >= 4) a = (a + ((bytes[k + 3] as number) << 24)) | 0;
  if (left >= 3) a = (a + ((bytes[k + 2] as number) << 16)) | 0;
  if (left >= 2) a = (a + ((bytes[k + 1] as number) << 8)) | 0;
  if (left >= 1) a = (a + (bytes[k] as number)) | 0;
  // final(a, b, c)
  c ^= b;
  c = (c - rot(b, 14)) | 0;
  a ^= c;
  a = (a - rot(c, 11)) | 0;
  b ^= a;
  b = (b - rot(a, 25)) | 0;
  c ^= b;
  c = (c - rot(b, 16)) | 0;
  a ^= c;
  a = (a - rot(c, 4)) | 0;
  b ^= a;
  b = (b - rot(a, 14)) | 0;
  c ^= b;
  c = (c - rot(b, 24)) | 0;
  return c;
}

/** Microseconds in a day, and the days from 1970-01-01 to 2000-01-01 (Postgres's epoch). */
const DAY_US = 86_400_000_000;
const PG_EPOCH_DAYS = 10_957;
/** The binary forms of timestamp 'infinity' and '-infinity' (int64 max and min), by their high words. */
const INT64_MAX_HIGH = 0x7fffffff;
const INT64_MIN_HIGH = -0x80000000;

/**
 * A text assembled in a byte buffer, as Postgres would print it, then hashed
 * (pgHashBytes). Reused from row to row: `reset`, append, `hash`.
 */
export class PgText {
  private bytes = new Uint8Array(256);
  length = 0;
  /** The last day printed (days from 2000-01-01), its text ('YYYY-MM-DD '), and whether it is BC: a spine's rows come mostly in time order. */
  private day = Number.NaN;
  private dayText = new Uint8Array(32);
  private dayLength = 0;
  private dayBc = false;
  /** The last timestamp printed (its binary form's two words) and its text. */
  private lastHigh = 0;
  private lastLow = -1;
  private lastText = new Uint8Array(64);
  private lastLength = 0;

  reset(): void {
    this.length = 0;
  }

  hash(): number {
    return pgHashBytes(this.bytes, this.length);
  }

  /** The text so far (for tests and errors). */
  toString(): string {
    return Buffer.from(this.bytes.subarray(0, this.length)).toString('utf8');
  }

  private room(n: number): void {
    if (this.length + n <= this.bytes.length) return;
    const bigger = new Uint8Array(Math.max(this.bytes.length * 2, this.length + n));
    bigger.set(this.bytes.subarray(0, this.length));
    this.bytes = bigger;
  }

  /** ASCII text (separators, suffixes). */
  ascii(text: string): void {
    this.room(text.length);
    for (let i = 0; i < text.length; i++) this.bytes[this.length++] = text.charCodeAt(i);
  }

  /** Bytes as they are (a text field's). */
  raw(buf: Uint8Array, start: number, length: number): void {
    this.room(length);
    this.bytes.set(buf.subarray(start, start + length), this.length);
    this.length += length;
  }

  /** `value`'s decimal digits (a whole number, at most 2^53), at least `width` of them (zeros first). */
  private digits(value: number, width: number): void {
    this.room(24);
    this.length = printDigits(this.bytes, this.length, value, width);
  }

  /** An int8 field (big-endian, at `at`) as bigint's `::text`. */
  int8(view: DataView, at: number): void {
    const high = view.getInt32(at);
    if (high < 0x200000 && high >= -0x200000) {
      const v = high * 0x1_0000_0000 + view.getUint32(at + 4);
      if (v < 0) this.ascii('-');
      this.digits(Math.abs(v), 1);
    } else this.ascii(view.getBigInt64(at).toString());
  }

  /** A timestamptz field (microseconds since 2000-01-01 UTC, big-endian, at `at`) as `(t at time zone 'UTC')::text` with DateStyle ISO. */
  timestampUtc(view: DataView, at: number): void {
    const high = view.getInt32(at);
    const low = view.getUint32(at + 4);
    // A spine comes mostly in time order, and many of its rows share a time (flights leave on the minute): printed once.
    // (Byte loops: a subarray per copy cost more than the few bytes it copies.)
    if (high === this.lastHigh && low === this.lastLow) {
      const n = this.lastLength;
      this.room(n);
      const bytes = this.bytes;
      const text = this.lastText;
      for (let i = 0; i < n; i++) bytes[this.length + i] = text[i] as number;
      this.length += n;
      return;
    }
    const from = this.length;
    this.printTimestamp(view, at, high, low);
    const n = this.length - from;
    if (this.lastText.length < n) this.lastText = new Uint8Array(n * 2);
    const bytes = this.bytes;
    const text = this.lastText;
    for (let i = 0; i < n; i++) text[i] = bytes[from + i] as number;
    this.lastHigh = high;
    this.lastLow = low;
    this.lastLength = n;
  }

  private printTimestamp(view: DataView, at: number, high: number, low: number): void {
    if (high === INT64_MAX_HIGH && low === 0xffffffff) return this.ascii('infinity');
    if (high === INT64_MIN_HIGH && low === 0) return this.ascii('-infinity');
    let days: number;
    let timeUs: number;
    if (high < 0x200000 && high >= -0x200000) {
      const us = high * 0x1_0000_0000 + low;
      days = Math.floor(us / DAY_US);
      timeUs = us - days * DAY_US;
    } else {
      // Beyond 2^53 microseconds (about 285 years from 2000) a number is not exact: by BigInt.
      const us = view.getBigInt64(at);
      const day = BigInt(DAY_US);
      let d = us / day;
      let t = us % day;
      if (t < 0n) {
        d -= 1n;
        t += day;
      }
      days = Number(d);
      timeUs = Number(t);
    }
    if (days !== this.day) this.printDay(days);
    this.room(this.dayLength + 24);
    const bytes = this.bytes;
    const dayText = this.dayText;
    let n = this.length;
    for (let i = 0; i < this.dayLength; i++) bytes[n++] = dayText[i] as number;
    const seconds = Math.floor(timeUs / 1_000_000);
    const fraction = timeUs - seconds * 1_000_000;
    n = printDigits(bytes, n, (seconds / 3600) | 0, 2);
    bytes[n++] = COLON;
    n = printDigits(bytes, n, ((seconds / 60) | 0) % 60, 2);
    bytes[n++] = COLON;
    n = printDigits(bytes, n, seconds % 60, 2);
    if (fraction > 0) {
      let f = fraction;
      let width = 6;
      while (f % 10 === 0) {
        f /= 10;
        width--;
      }
      bytes[n++] = DOT;
      n = printDigits(bytes, n, f, width);
    }
    this.length = n;
    if (this.dayBc) this.ascii(' BC');
  }

  /** Day `days` (from 2000-01-01) as 'YYYY-MM-DD ', kept for the rows that follow. */
  private printDay(days: number): void {
    // The proleptic Gregorian date of a day count from 1970 (Howard Hinnant's civil_from_days).
    const z = days + PG_EPOCH_DAYS + 719_468;
    const era = Math.floor(z / 146_097);
    const doe = z - era * 146_097;
    const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
    const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
    const mp = Math.floor((5 * doy + 2) / 153);
    const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
    const month = mp < 10 ? mp + 3 : mp - 9;
    const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
    const text = this.dayText;
    let n = printDigits(text, 0, year > 0 ? year : 1 - year, 4);
    text[n++] = DASH;
    n = printDigits(text, n, month, 2);
    text[n++] = DASH;
    n = printDigits(text, n, day, 2);
    text[n++] = SPACE;
    this.day = days;
    this.dayLength = n;
    this.dayBc = year <= 0;
  }
}

const COLON = 58;
const DOT = 46;
const DASH = 45;
const SPACE = 32;
