/**
 * Append-only columns of numbers in typed arrays that double as they fill: what a
 * spine of half a million rows keeps per row (its time, its key's id, where its bytes
 * are). A plain array of numbers grown a push at a time was copied as it grew and
 * traced by the garbage collector; pushing a row's four references into plain arrays
 * took about as long as reading the row (pit-stream.ts). One class per element type,
 * so that each push site sees one kind of array.
 */

abstract class Growable<T extends Int32Array | Float64Array> {
  protected data: T;
  length = 0;

  /** Room for `capacity` values; or, given an array, that array's values (taken, not copied). */
  constructor(capacity: number | T) {
    if (typeof capacity === 'number') this.data = this.allocate(Math.max(16, capacity));
    else {
      this.data = capacity;
      this.length = capacity.length;
    }
  }

  protected abstract allocate(capacity: number): T;

  /** Room for one more value. */
  protected grow(): void {
    const bigger = this.allocate(Math.max(16, this.data.length * 2));
    bigger.set(this.data);
    this.data = bigger;
  }

  /** The values pushed so far: a view, valid until the next push. */
  view(): T {
    return this.data.subarray(0, this.length) as T;
  }
}

export class GrowableInt32 extends Growable<Int32Array> {
  protected allocate(capacity: number): Int32Array {
    return new Int32Array(capacity);
  }

  push(value: number): void {
    if (this.length === this.data.length) this.grow();
    this.data[this.length++] = value;
  }
}

export class GrowableFloat64 extends Growable<Float64Array> {
  protected allocate(capacity: number): Float64Array {
    return new Float64Array(capacity);
  }

  push(value: number): void {
    if (this.length === this.data.length) this.grow();
    this.data[this.length++] = value;
  }
}

/** The columns one after the other, in one array (the one itself when there is one). */
function concat<T extends Int32Array | Float64Array>(parts: readonly T[], allocate: (length: number) => T): T {
  if (parts.length === 1) return parts[0] as T;
  const out = allocate(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export const concatInt32 = (parts: readonly Int32Array[]): Int32Array => concat(parts, (n) => new Int32Array(n));
export const concatFloat64 = (parts: readonly Float64Array[]): Float64Array => concat(parts, (n) => new Float64Array(n));
