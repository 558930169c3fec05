/**
 * A training split's encoded rows as two files, so training throughput can be measured
 * on a machine that has neither Postgres nor this repo's install (a GPU machine lent for
 * a few minutes): `<base>.json` holds the shape, `<base>.f32` the rows, each row its `width`
 * encoded values then its label, float32 little-endian, in the order one shuffled
 * epoch read them.
 */
import { readFile, writeFile } from 'node:fs/promises';
import type { Batch } from '../../ml/batches.ts';

export interface BatchesFileMeta {
  width: number;
  rows: number;
  outputKind: 'binary_classifier' | 'regressor';
  /** Where the rows came from, for the report. */
  source: string;
}

export async function writeBatchesFile(base: string, meta: Omit<BatchesFileMeta, 'rows'>, batches: AsyncIterable<Batch>): Promise<BatchesFileMeta> {
  const parts: Float32Array[] = [];
  let rows = 0;
  for await (const b of batches) {
    const part = new Float32Array(b.size * (meta.width + 1));
    for (let r = 0; r < b.size; r++) {
      part.set(b.x.subarray(r * meta.width, (r + 1) * meta.width), r * (meta.width + 1));
      part[r * (meta.width + 1) + meta.width] = b.y[r] ?? 0;
    }
    parts.push(part);
    rows += b.size;
  }
  const full: BatchesFileMeta = { ...meta, rows };
  await writeFile(`${base}.f32`, Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))));
  await writeFile(`${base}.json`, JSON.stringify(full));
  return full;
}

/** The file's rows cut into batches of `batchSize` (the last may be smaller), fresh arrays each. */
export async function readBatchesFile(base: string): Promise<{ meta: BatchesFileMeta; batches: (batchSize: number) => Batch[] }> {
  const meta = JSON.parse(await readFile(`${base}.json`, 'utf8')) as BatchesFileMeta;
  const bytes = await readFile(`${base}.f32`);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  if (all.length !== meta.rows * (meta.width + 1)) throw new Error(`${base}.f32 holds ${all.length} values, ${meta.rows} rows of ${meta.width + 1} expected`);
  const batches = (batchSize: number): Batch[] => {
    const out: Batch[] = [];
    for (let start = 0; start < meta.rows; start += batchSize) {
      const size = Math.min(batchSize, meta.rows - start);
      const x = new Float32Array(size * meta.width);
      const y = new Float32Array(size);
      for (let r = 0; r < size; r++) {
        const at = (start + r) * (meta.width + 1);
        x.set(all.subarray(at, at + meta.width), r * meta.width);
        y[r] = all[at + meta.width] ?? 0;
      }
      out.push({ x, y, size });
    }
    return out;
  };
  return { meta, batches };
}
