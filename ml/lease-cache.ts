/**
 * Loaded things (model versions) shared by concurrent users, by key. A user holds a
 * lease while it works; an entry is loaded once however many ask at the same time,
 * and is disposed only when it is both surplus (beyond `capacity`, least recently
 * used first) and unleased, so nobody ever scores with a disposed model.
 */
export interface Disposable {
  dispose(): void;
}

export interface Lease<T> {
  readonly value: T;
  /** Idempotent. */
  release(): void;
}

interface Entry<T> {
  promise: Promise<T>;
  value: T | undefined;
  leases: number;
  lastUsed: number;
}

export class LeaseCache<T extends Disposable> {
  private readonly entries = new Map<string, Entry<T>>();
  private clock = 0;

  constructor(
    private readonly load: (key: string) => Promise<T>,
    private readonly capacity = 8,
  ) {}

  /** Loads (once) and leases the entry; a failed load is forgotten, so the next call tries again. */
  async acquire(key: string): Promise<Lease<T>> {
    let entry = this.entries.get(key);
    if (!entry) {
      const created: Entry<T> = { promise: this.load(key), value: undefined, leases: 0, lastUsed: 0 };
      entry = created;
      this.entries.set(key, created);
      created.promise.then(
        (value) => {
          created.value = value;
        },
        () => {
          if (this.entries.get(key) === created) this.entries.delete(key);
        },
      );
    }
    entry.leases++;
    entry.lastUsed = ++this.clock;
    let value: T;
    try {
      value = entry.value ?? (await entry.promise);
    } catch (err) {
      entry.leases--;
      throw err;
    }
    this.evict();
    return new HeldLease(value, () => {
      entry.leases--;
      if (entry.leases === 0) this.evict();
    });
  }

  keys(): string[] {
    return [...this.entries.keys()];
  }

  /** Disposes every loaded entry; leases still held are the caller's problem (call at shutdown). */
  clear(): void {
    for (const entry of this.entries.values()) entry.value?.dispose();
    this.entries.clear();
  }

  private evict(): void {
    if (this.entries.size <= this.capacity) return;
    const idle = [...this.entries].filter(([, e]) => e.leases === 0 && e.value !== undefined).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [key, entry] of idle) {
      if (this.entries.size <= this.capacity) break;
      this.entries.delete(key);
      entry.value?.dispose();
    }
  }
}

/**
 * A lease, as a class: a server takes one per request, and run through tsx (keepNames)
 * every named closure made is wrapped in __name, which gives each one a property of
 * its own; a method costs nothing per lease.
 */
class HeldLease<T> implements Lease<T> {
  private released = false;

  constructor(
    readonly value: T,
    private readonly onRelease: () => void,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.onRelease();
  }
}
