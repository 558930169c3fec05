/** Stream helpers shared by the stores and pipelines. */

/**
 * Keeps one `next()` of the source in flight while the consumer works on the
 * current item, so a cursor's round trip overlaps a training step. If the consumer
 * stops early, the source is closed (`return()`), which releases its cursor.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T, void, undefined> {
  const it = source[Symbol.asyncIterator]();
  let pending = it.next();
  let finished = false;
  try {
    for (;;) {
      const r = await pending;
      if (r.done) {
        finished = true;
        return;
      }
      pending = it.next();
      yield r.value;
    }
  } catch (err) {
    finished = true; // the source threw, so it is closed already
    throw err;
  } finally {
    if (!finished) {
      await pending.catch(() => undefined);
      await it.return?.();
    }
  }
}

/**
 * Merges streams of batches, each already ordered by `key`, into batches of `size`
 * ordered by it (ties: the earlier stream first). Each stream is read ahead, so the
 * cursors' round trips overlap the merge.
 */
export async function* mergeBy<Row>(streams: Array<AsyncIterable<Row[]>>, key: (row: Row) => number, size: number): AsyncGenerator<Row[]> {
  type Head = { iterator: AsyncGenerator<Row[], void, undefined>; batch: Row[]; at: number };
  const heads: Head[] = streams.map((stream) => ({ iterator: readAhead(stream), batch: [], at: 0 }));
  /** The head's next non-empty batch; false once its stream ended. */
  const advance = async (h: Head): Promise<boolean> => {
    for (;;) {
      const result = await h.iterator.next();
      if (result.done) return false;
      if (result.value.length > 0) {
        h.batch = result.value;
        h.at = 0;
        return true;
      }
    }
  };
  try {
    let live = (await Promise.all(heads.map(async (h) => ((await advance(h)) ? h : undefined)))).filter((h): h is Head => h !== undefined);
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
    // An abandoned merge closes every stream (readAhead closes its source: a cursor's transaction ends).
    await Promise.allSettled(heads.map((h) => h.iterator.return()));
  }
}
