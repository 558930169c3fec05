/**
 * A chunk's spine read in two parts, one per thread (registry/feature-store/spine-rows.ts,
 * pit-stream.ts spinesOnThreads): the other thread's part is posted (its buffers moved),
 * its keys' ids made the main thread's, and its rows numbered after the main thread's.
 */
import { describe, expect, it } from 'vitest';
import { concatSpines, KeyIds, newChunkSpine, postedSpine, receivedSpine, type ChunkSpine } from '../registry/feature-store/index.ts';

/** Pushes rows (key text, time, sort key) into `spine`, each row's bytes its label `${tag}${n}`. */
function fill(spine: ChunkSpine, ids: KeyIds, tag: string, rows: Array<[string, number, number]>): void {
  for (const [key, time, sortKey] of rows) {
    const row = spine.times.length;
    const bytes = Buffer.from(`${tag}${row}`);
    spine.arena.push(sortKey >>> 24, row, sortKey, bytes, 0, bytes.length, bytes.length);
    const text = Buffer.from(key);
    spine.keys[0]?.push(ids.idOf(text, 0, text.length));
    spine.times.push(time);
  }
}

/** Every record of the spine's Arena: its row number and its bytes, by row. */
function records(spine: ChunkSpine): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  for (let b = 0; b < spine.arena.buckets; b++) {
    const r = spine.arena.records(b);
    for (let i = 0; i < r.count; i++) out.push([r.row[i] as number, (r.blocks[r.block[i] as number] as Buffer).toString('utf8', r.start[i], r.end[i])]);
  }
  return out.sort((x, y) => x[0] - y[0]);
}

describe('a chunk spine read on two threads', () => {
  it("is the main thread's rows then the other's, their keys' ids the main thread's, its rows numbered on, and takes rows after", () => {
    const ours = new KeyIds();
    const first = newChunkSpine(1, true);
    fill(first, ours, 'main', [['ORD', 10, 0x05000000], ['JFK', 20, 0xff000001], ['ORD', 30, 0x05000002]]);
    // The other thread saw its keys in another order: its ids differ from ours.
    const theirs = new KeyIds();
    const second = newChunkSpine(1, true);
    fill(second, theirs, 'thread', [['SFO', 15, 0x05000003], ['JFK', 25, 0x00000004], ['ORD', 35, 0xff000005], ['SFO', 45, 0x80000006]]);
    expect([...theirs.byText.keys()]).toEqual(['SFO', 'JFK', 'ORD']);

    const { posted, transfer } = postedSpine(second);
    const moved = structuredClone(posted, { transfer });
    expect(transfer.every((b) => b.byteLength === 0)).toBe(true);
    const spine = concatSpines(first, receivedSpine(moved, [[...theirs.byText.keys()]], [ours]));

    const texts = [...ours.byText.keys()];
    expect(texts).toEqual(['ORD', 'JFK', 'SFO']);
    expect([...(spine.keys[0]?.view() ?? [])].map((id) => texts[id])).toEqual(['ORD', 'JFK', 'ORD', 'SFO', 'JFK', 'ORD', 'SFO']);
    expect([...spine.times.view()]).toEqual([10, 20, 30, 15, 25, 35, 45]);
    expect(records(spine)).toEqual([
      [0, 'main0'],
      [1, 'main1'],
      [2, 'main2'],
      [3, 'thread0'],
      [4, 'thread1'],
      [5, 'thread2'],
      [6, 'thread3'],
    ]);
    // A row pushed after (a slice of the window read from Postgres) is numbered on.
    fill(spine, ours, 'late', [['JFK', 50, 0xff000007]]);
    expect(records(spine).at(-1)).toEqual([7, 'late7']);
    expect(spine.keys[0]?.view()[7]).toBe(1);
  });
});
