/**
 * The cache of loaded model versions the server and batch workers share: one load
 * per version however many ask at once, never a disposal under a lease, least
 * recently used surplus versions disposed, failed loads retried.
 */
import { describe, expect, it } from 'vitest';
import { LeaseCache } from '../ml/lease-cache.ts';

class Loaded {
  disposed = false;
  constructor(readonly key: string) {}
  dispose(): void {
    this.disposed = true;
  }
}

function cache(capacity: number, fail = new Set<string>()) {
  const loads: string[] = [];
  const all: Loaded[] = [];
  const instance = new LeaseCache<Loaded>(async (key) => {
    loads.push(key);
    await new Promise((r) => setTimeout(r, 5));
    if (fail.has(key)) {
      fail.delete(key);
      throw new Error(`cannot load ${key}`);
    }
    const loaded = new Loaded(key);
    all.push(loaded);
    return loaded;
  }, capacity);
  return { instance, loads, all };
}

describe('LeaseCache', () => {
  it('loads a key once for concurrent callers', async () => {
    const { instance, loads } = cache(4);
    const leases = await Promise.all([instance.acquire('m@1'), instance.acquire('m@1'), instance.acquire('m@1')]);
    expect(loads).toEqual(['m@1']);
    expect(new Set(leases.map((l) => l.value)).size).toBe(1);
  });

  it('disposes the least recently used surplus entry, never one that is leased', async () => {
    const { instance, all } = cache(2);
    const held = await instance.acquire('m@1');
    (await instance.acquire('m@2')).release();
    (await instance.acquire('m@3')).release();
    // Over capacity: m@2 is the least recently used unleased entry; m@1 is leased.
    expect(instance.keys().sort()).toEqual(['m@1', 'm@3']);
    expect(all.find((l) => l.key === 'm@2')?.disposed).toBe(true);
    expect(held.value.disposed).toBe(false);
    (await instance.acquire('m@4')).release();
    expect(held.value.disposed).toBe(false);
    held.release();
    held.release(); // idempotent
    (await instance.acquire('m@5')).release();
    expect(all.find((l) => l.key === 'm@1')?.disposed).toBe(true);
    expect(instance.keys()).toHaveLength(2);
  });

  it('forgets a failed load, so the next caller tries again', async () => {
    const { instance, loads } = cache(2, new Set(['m@9']));
    await expect(instance.acquire('m@9')).rejects.toThrow('cannot load m@9');
    const lease = await instance.acquire('m@9');
    expect(lease.value.key).toBe('m@9');
    expect(loads).toEqual(['m@9', 'm@9']);
  });

  it('clear disposes everything loaded', async () => {
    const { instance, all } = cache(4);
    (await instance.acquire('a@1')).release();
    await instance.acquire('a@2');
    instance.clear();
    expect(all.every((l) => l.disposed)).toBe(true);
    expect(instance.keys()).toEqual([]);
  });
});
