/** Stream helpers shared by the stores and pipelines. */

/**
 * Merges streams of batches, each already ordered by `key`, into batches of `size`
 * ordered by it (ties: the earlier stream first). Each stream's next batch is fetched
 * while its current one is merged, so the cursors' round trips overlap.
 */
export async function* mergeBy<Row>(streams: Array<AsyncIterator<Row[]>>, key: (row: Row) => number, size: number): AsyncGenerator<Row[]> {
  type Head = { iterator: AsyncIterator<Row[]>; batch: Row[]; at: number; next: Promise<IteratorResult<Row[]>> | undefined };
  const heads: Head[] = streams.map((iterator) => ({ iterator, batch: [], at: 0, next: iterator.next() }));
  /** The head's next non-empty batch (and the fetch of the one after); false once its stream ended. */
  const advance = async (h: Head): Promise<boolean> => {
    while (h.next) {
      const result = await h.next;
      h.next = undefined;
      if (result.done) return false;
      h.next = h.iterator.next();
      if (result.value.length > 0) {
        h.batch = result.value;
        h.at = 0;
        return true;
      }
    }
    return false;
  };
  let live: Head[] = [];
  try {
    live = (await Promise.all(heads.map(async (h) => ((await advance(h)) ? h : undefined)))).filter((h): h is Head => h !== undefined);
    let out: Row[] = [];
    while (live.length > 0) {
      let best = live[0] as Head;
      let bestKey = key(best.batch[best.at] as Row);
      for (let i = 1; i < live.length; i++) {
        const h = live[i] as Head;
        const k = key(h.batch[h.at] as Row);
        if (k < bestKey) {
          best = h;
          bestKey = k;
        }
      }
      out.push(best.batch[best.at++] as Row);
      if (out.length === size) {
        yield out;
        out = [];
      }
      if (best.at >= best.batch.length && !(await advance(best))) live = live.filter((h) => h !== best);
    }
    if (out.length) yield out;
  } finally {
    // An abandoned merge closes every cursor (their transactions end, their connections go back).
    await Promise.allSettled(heads.map(async (h) => {
      if (h.next) await h.next.catch(() => undefined);
      await h.iterator.return?.(undefined);
    }));
  }
}
