/**
 * A chunk's split counts and its train split's moments and category counts, gathered
 * as the stream plan writes the chunk's rows (a RowTap of pit-stream.ts), so that no
 * statement has to read the chunk's table again for them: those statements took
 * 1.7-1.9 s of an 11.6 s build of 3M rows, on both cores, after every row was written.
 *
 * The figures must be the ones the SQL over the table gives (trainMoments, the category
 * counts), bit for bit: a dataset's statistics are the same whichever plan built it,
 * and a rebuild's are the same as the first build's. They are, because:
 *  - a chunk's table is created and filled by one COPY in one transaction, and a table
 *    new in its transaction skips the free space map: Postgres appends every page, so
 *    the table holds the rows in the order written, the order trainMoments reads them
 *    in (from the first block, in one process; separate INSERTs, by contrast, may put a
 *    later row in an earlier page's free space), and
 *  - the moments follow Postgres' own transition function for avg and stddev_pop of
 *    double precision (float8_accum: the Youngs-Cramer updates, in doubles, as JavaScript
 *    computes them) over the same values, in that order; avg is Sx / N and
 *    stddev_pop sqrt(Sxx / N).
 * Only what that holds for is gathered: numbers stored as double precision, bigint (up
 * to 2^53, where the cast to double is exact), integer or smallint, and categories of
 * text. A chunk with anything else (a boolean feature, whose avg Postgres takes in
 * numeric) leaves that part to SQL (`moments` or `categories` undefined), as does a sum
 * Postgres would refuse (an overflow), so that the error is Postgres'.
 */
import type { RowFields, RowTap } from '../feature-store/index.ts';
import { KeyIds } from '../feature-store/index.ts';
import type { NumericStats } from '../../ml/stats.ts';
import type { Split } from './datasets.ts';

/** What a chunk's rows gave, as the SQL over its table would. */
export interface ChunkStatistics {
  counts: Record<Split, number>;
  /** Per numeric feature, over the train split; undefined when left to SQL. */
  moments?: Record<string, NumericStats>;
  /** Per category feature, the train split's rows of each non-null value (as text); undefined when left to SQL. */
  categories?: Record<string, Map<string, number>>;
}

enum NumberKind {
  Float8,
  Int8,
  Int4,
  Int2,
}

const NUMBER_KINDS: Readonly<Record<string, NumberKind>> = { 'double precision': NumberKind.Float8, bigint: NumberKind.Int8, integer: NumberKind.Int4, smallint: NumberKind.Int2 };

/** The bytes of each split's name in `_split` ('train', 'validation', 'test'): a row's split by its length alone (they differ). */
const TRAIN_LENGTH = 5;
const VALIDATION_LENGTH = 10;
const TEST_LENGTH = 4;

/** C's isinf: NaN is not. */
const isInfinite = (v: number) => v === Number.POSITIVE_INFINITY || v === Number.NEGATIVE_INFINITY;

/** A column the train split's figures come from (by its place in the written order): a number's moments or a category's counts. */
interface Target {
  column: number;
  kind: 'number' | 'category';
  index: number;
}

/**
 * Postgres' float8_accum states (N, Sx, Sxx) of `count` features and their updates, step
 * for step: three doubles a feature in one array, where an object a feature cost the
 * loads and stores of its fields at every value.
 */
class Moments {
  private readonly state: Float64Array;
  /** A finite input made a sum infinite: Postgres raises an overflow error there. */
  overflowed = false;

  constructor(count: number) {
    this.state = new Float64Array(3 * count);
  }

  add(i: number, x: number): void {
    const s = this.state;
    const at = 3 * i;
    const n0 = s[at] as number;
    const sx0 = s[at + 1] as number;
    const n = n0 + 1;
    const sx = sx0 + x;
    let sxx = s[at + 2] as number;
    if (n0 > 0) {
      const tmp = x * n - sx;
      sxx += (tmp * tmp) / (n * n0);
      if (isInfinite(sx) || isInfinite(sxx)) {
        if (!isInfinite(sx0) && !isInfinite(x)) this.overflowed = true;
        sxx = Number.NaN;
      }
    } else if (!Number.isFinite(x)) sxx = Number.NaN;
    s[at] = n;
    s[at + 1] = sx;
    s[at + 2] = sxx;
  }

  /** Feature i's count, avg and stddev_pop as trainMoments reads them (null figures of an empty split as 0). */
  stats(i: number): NumericStats {
    const [n, sx, sxx] = this.state.subarray(3 * i, 3 * i + 3) as unknown as [number, number, number];
    return n === 0 ? { count: 0, mean: 0, std: 0 } : { count: n, mean: sx / n, std: Math.sqrt(sxx / n) };
  }
}

/**
 * The RowTap of one chunk: which columns it reads is settled by `columns` (the
 * written order), then each row is counted in its split and, in the train split, its
 * numbers and categories are taken.
 */
export class SplitStatisticsTap implements RowTap {
  private readonly counts: Record<Split, number> = { train: 0, validation: 0, test: 0 };
  private split = -1;
  /** The columns the train split's figures come from, in three arrays (an object a target cost a lookup of its fields at every row): each one's place in the written order, whether a category, and its feature's index. */
  private targetColumn = new Int32Array(0);
  private targetIsCategory = new Uint8Array(0);
  private targetIndex = new Int32Array(0);
  private kinds: NumberKind[] = [];
  private moments: Moments;
  private keyIds: KeyIds[] = [];
  private keyCounts: number[][] = [];
  private momentsInJs = true;
  private categoriesInJs = true;
  /** This row's fields, by column: where each value starts and its length (-1: null). */
  private valueAt = new Int32Array(0);
  private valueLength = new Int32Array(0);
  /** Per column of the row being told, the range of `fields` its field is in (a number, where a buffer per column cost a write barrier per field). */
  private valueRange = new Int32Array(0);

  constructor(
    private readonly numeric: ReadonlyArray<{ name: string }>,
    private readonly categorical: ReadonlyArray<{ name: string }>,
  ) {
    this.moments = new Moments(numeric.length);
  }

  columns(columns: ReadonlyArray<{ name: string; pgType?: string }>): void {
    const at = (name: string) => columns.findIndex((c) => c.name === name);
    this.split = at('_split');
    if (this.split < 0) throw new Error('a split statistics tap needs the _split column');
    this.valueAt = new Int32Array(columns.length);
    this.valueLength = new Int32Array(columns.length);
    this.valueRange = new Int32Array(columns.length);
    const targets: Target[] = [];
    this.numeric.forEach((f, i) => {
      const c = at(f.name);
      const kind = c < 0 ? undefined : NUMBER_KINDS[columns[c]?.pgType ?? ''];
      if (kind === undefined) this.momentsInJs = false;
      else {
        targets.push({ column: c, kind: 'number', index: i });
        this.kinds[i] = kind;
      }
    });
    this.categorical.forEach((f, i) => {
      const c = at(f.name);
      if (c < 0 || columns[c]?.pgType !== 'text') this.categoriesInJs = false;
      else targets.push({ column: c, kind: 'category', index: i });
      this.keyIds.push(new KeyIds());
      this.keyCounts.push([]);
    });
    this.targetColumn = Int32Array.from(targets, (t) => t.column);
    this.targetIsCategory = Uint8Array.from(targets, (t) => (t.kind === 'category' ? 1 : 0));
    this.targetIndex = Int32Array.from(targets, (t) => t.index);
  }

  // Fields are read through the views the writer keeps of its buffers (a DataView's
  // reads are inlined; Buffer's are calls), never through a view made here: the spine
  // rows come from thousands of buffers in shuffled order, so a cache of views would miss.
  row(fields: RowFields): void {
    // Where every field of the row is, range by range; the split's range first (the
    // spine's and extra columns'), so that a row of another split is counted without
    // walking the features' ranges.
    const ranges = fields.count.length;
    let column = 0;
    let k = 0;
    for (; k < ranges && column <= this.split; k++) column = this.walk(fields, k, column);
    // The split by its name's length: a keyed store per row on a record of counts cost more than a branch.
    const splitLength = this.valueLength[this.split] as number;
    if (splitLength !== TRAIN_LENGTH) {
      if (splitLength === VALIDATION_LENGTH) this.counts.validation++;
      else if (splitLength === TEST_LENGTH) this.counts.test++;
      else throw new Error(`a row's _split is none of train, validation, test (${splitLength} bytes)`);
      return;
    }
    this.counts.train++;
    for (; k < ranges; k++) column = this.walk(fields, k, column);
    const targets = this.targetColumn.length;
    for (let t = 0; t < targets; t++) {
      const c = this.targetColumn[t] as number;
      const length = this.valueLength[c] as number;
      if (length < 0) continue;
      const range = this.valueRange[c] as number;
      const index = this.targetIndex[t] as number;
      if (this.targetIsCategory[t] === 0) {
        if (this.momentsInJs) this.addNumber(index, fields.view[range] as DataView, this.valueAt[c] as number);
      } else if (this.categoriesInJs) {
        const id = (this.keyIds[index] as KeyIds).idOf(fields.buf[range] as Buffer, this.valueAt[c] as number, length);
        const counts = this.keyCounts[index] as number[];
        counts[id] = (counts[id] ?? 0) + 1;
      }
    }
  }

  /** Notes where range k's fields are, its first being column `column`; returns the column after its last. */
  private walk(fields: RowFields, k: number, column: number): number {
    const count = fields.count[k] as number;
    const view = fields.view[k];
    if (fields.buf[k] === undefined || view === undefined) {
      for (let f = 0; f < count; f++) this.valueLength[column++] = -1;
      return column;
    }
    let at = fields.start[k] as number;
    for (let f = 0; f < count; f++) {
      const length = view.getInt32(at);
      this.valueRange[column] = k;
      this.valueAt[column] = at + 4;
      this.valueLength[column++] = length;
      at += 4 + (length > 0 ? length : 0);
    }
    return column;
  }

  private addNumber(i: number, view: DataView, at: number): void {
    let x: number;
    switch (this.kinds[i]) {
      case NumberKind.Float8:
        x = view.getFloat64(at);
        break;
      case NumberKind.Int8: {
        const high = view.getInt32(at);
        // Beyond 2^53 a JavaScript number may round another way than the cast to double: SQL decides.
        if (high >= 0x200000 || high < -0x200000) {
          this.momentsInJs = false;
          return;
        }
        x = high * 0x1_0000_0000 + view.getUint32(at + 4);
        break;
      }
      case NumberKind.Int4:
        x = view.getInt32(at);
        break;
      default:
        x = view.getInt16(at);
    }
    this.moments.add(i, x);
    if (this.moments.overflowed) this.momentsInJs = false;
  }

  /** The chunk's figures, once every row was told. */
  result(): ChunkStatistics {
    return {
      counts: { ...this.counts },
      ...(this.momentsInJs ? { moments: Object.fromEntries(this.numeric.map((f, i) => [f.name, this.moments.stats(i)])) } : {}),
      ...(this.categoriesInJs
        ? {
            categories: Object.fromEntries(
              this.categorical.map((f, i) => {
                const counts = this.keyCounts[i] as number[];
                return [f.name, new Map([...(this.keyIds[i] as KeyIds).byText].map(([text, id]) => [text, counts[id] ?? 0]))];
              }),
            ),
          }
        : {}),
    };
  }
}
