import { describe, expect, it } from 'vitest';
import { columnsFromRows, rowOf, type Column, type ColumnBatch, type NumberColumnType } from '../core/columns.ts';
import { FtiError } from '../core/errors.ts';
import { readAhead } from '../core/streams.ts';
import { toBatches, type Batch } from '../ml/batches.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import type { FeatureSpec } from '../ml/feature-spec.ts';
import { ModelSignatureSchema } from '../ml/signature.ts';
import { computeStats } from '../ml/stats.ts';
import type { FeatureRow } from '../ml/values.ts';

const specs: FeatureSpec[] = [
  { name: 'distance', dtype: 'float', encoding: 'standardize' },
  { name: 'origin_delay_7d', dtype: 'float', encoding: 'standardize', missingIndicator: true },
  { name: 'origin', dtype: 'string', encoding: 'one_hot', maxCategories: 2 },
  { name: 'hour', dtype: 'int', encoding: 'cyclical', period: 24 },
  { name: 'weekday', dtype: 'int', encoding: 'one_hot' },
];
const output = { name: 'delayed', kind: 'binary_classifier' } as const;

const training: FeatureRow[] = [
  { distance: 100, origin_delay_7d: 10, origin: 'SFO', hour: 6, weekday: 1 },
  { distance: 200, origin_delay_7d: null, origin: 'SFO', hour: 12, weekday: 2 },
  { distance: 300, origin_delay_7d: 20, origin: 'LAX', hour: 18, weekday: 1 },
  { distance: 400, origin_delay_7d: null, origin: 'OAK', hour: 0, weekday: 3 },
];

function fitted() {
  return fitSignature(specs, computeStats(training, specs), output);
}

async function collect<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of source) out.push(item);
  return out;
}

describe('statistics and fitSignature', () => {
  it('computes mean and population std over non-null values, and categories by frequency', () => {
    const stats = computeStats(training, specs);
    expect(stats['distance']).toEqual({ count: 4, mean: 250, std: Math.sqrt(12500) });
    expect(stats['origin_delay_7d']).toEqual({ count: 2, mean: 15, std: 5 });
    expect(stats['origin']).toEqual({ categories: ['SFO', 'LAX', 'OAK'] }); // ties by name
    expect(stats['weekday']).toEqual({ categories: ['1', '2', '3'] });
    expect(stats['hour']).toBeUndefined(); // cyclical needs none
  });

  it('fits a valid signature: fill = mean, top-N categories, period from the spec', () => {
    const sig = fitted();
    expect(ModelSignatureSchema.parse(sig)).toEqual(sig);
    expect(sig.inputs.map((i) => i.encoding)).toEqual([
      { kind: 'standardize', mean: 250, std: Math.sqrt(12500), fill: 250, missingIndicator: false },
      { kind: 'standardize', mean: 15, std: 5, fill: 15, missingIndicator: true },
      { kind: 'one_hot', categories: ['SFO', 'LAX'] },
      { kind: 'cyclical', period: 24 },
      { kind: 'one_hot', categories: ['1', '2', '3'] },
    ]);
    expect(sig.output).toEqual(output);
  });

  it('uses std 1 for a constant or empty column, so encoding stays finite', () => {
    const spec: FeatureSpec[] = [{ name: 'x', dtype: 'float', encoding: 'standardize' }];
    expect(fitSignature(spec, { x: { count: 5, mean: 3, std: 0 } }, output).inputs[0]?.encoding).toMatchObject({ mean: 3, std: 1, fill: 3 });
    expect(fitSignature(spec, { x: { count: 0, mean: Number.NaN, std: Number.NaN } }, output).inputs[0]?.encoding).toMatchObject({ mean: 0, std: 1, fill: 0 });
  });

  it('rejects bad specs and missing statistics with a clear, non-retryable error', () => {
    const stats = computeStats(training, specs);
    const attempt = (inputs: unknown[], s: Record<string, unknown> = stats) => () => fitSignature(inputs as FeatureSpec[], s as never, output);
    expect(attempt([{ name: 'origin', dtype: 'string', encoding: 'standardize' }])).toThrow(/invalid feature specs: 0\.dtype/);
    expect(attempt([{ name: 'Distance', dtype: 'float', encoding: 'standardize' }])).toThrow(/0\.name/);
    expect(attempt([{ name: 'hour', dtype: 'int', encoding: 'cyclical' }])).toThrow(/0\.period/);
    expect(attempt([{ name: 'hour', dtype: 'int', encoding: 'cyclical', period: 24, extra: 1 }])).toThrow(/extra/);
    expect(attempt([specs[0], specs[0]])).toThrow(/listed twice/);
    expect(attempt([specs[0]], {})).toThrow(/distance needs numeric stats/);
    expect(attempt([specs[2]], { origin: { count: 1, mean: 0, std: 1 } })).toThrow(/origin needs categorical stats/);
    expect(attempt([specs[2]], { origin: { categories: [] } })).toThrow(/no non-null values/);
    try {
      attempt([])();
    } catch (err) {
      expect(err).toBeInstanceOf(FtiError);
      expect((err as FtiError).type).toBe('FtiInvalidInput');
    }
  });
});

describe('createEncoder', () => {
  it('names its columns and encodes a row exactly', () => {
    const enc = createEncoder(fitted());
    expect(enc.columns).toEqual(['distance', 'origin_delay_7d', 'origin_delay_7d:missing', 'origin=SFO', 'origin=LAX', 'hour:sin', 'hour:cos', 'weekday=1', 'weekday=2', 'weekday=3']);
    expect(enc.width).toBe(10);
    const out = new Float32Array(enc.width);
    enc.encodeRow({ distance: 250 + Math.sqrt(12500), origin_delay_7d: 25, origin: 'LAX', hour: 6, weekday: 3 }, out);
    const expected = [1, 2, 0, 0, 1, 1, 0, 0, 0, 1];
    expected.forEach((v, i) => expect(out[i]).toBeCloseTo(v, 6));
  });

  it('encodes nulls as documented: mean fill + missing flag, all-zero one-hot, (0, 0) cyclical', () => {
    const enc = createEncoder(fitted());
    const out = enc.encodeRows([{ distance: null, origin_delay_7d: null, origin: null, hour: null, weekday: null }]);
    expect(Array.from(out)).toEqual([0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('encodes unseen categories (and those cut by maxCategories) as all zeros', () => {
    const enc = createEncoder(fitted());
    const [oak, jfk] = [enc.encodeRows([{ ...training[3], origin: 'OAK' }]), enc.encodeRows([{ ...training[3], origin: 'JFK', weekday: 6 }])];
    expect(Array.from(oak.slice(3, 5))).toEqual([0, 0]);
    expect(Array.from(jfk.slice(3, 5))).toEqual([0, 0]);
    expect(Array.from(jfk.slice(7, 10))).toEqual([0, 0, 0]);
  });

  it('puts hours 23 and 0 next to each other, and 12 opposite', () => {
    const enc = createEncoder(fitSignature([specs[3] as FeatureSpec], {}, output));
    const [h0, h23, h12] = [0, 23, 12].map((hour) => enc.encodeRows([{ hour }]));
    const dist = (a: Float32Array, b: Float32Array) => Math.hypot((a[0] as number) - (b[0] as number), (a[1] as number) - (b[1] as number));
    expect(dist(h0 as Float32Array, h23 as Float32Array)).toBeCloseTo(2 * Math.sin(Math.PI / 24), 5);
    expect(dist(h0 as Float32Array, h12 as Float32Array)).toBeCloseTo(2, 5);
  });

  it('encodes cyclically exactly as sin and cos of the value, looked up or not, on both paths', () => {
    const enc = createEncoder({ inputs: [{ name: 'hour', dtype: 'float', encoding: { kind: 'cyclical', period: 24 } }], output: { name: 'y', kind: 'regressor' } });
    const scale = (2 * Math.PI) / 24;
    // Whole numbers in and past the table, each twice (computed, then looked up), a negative zero, fractions, negatives.
    const hours = [0, 5, 23, 5, 0, 1023, 1024, 1023, 1e9, -0, -0, -3, 2.5, 2.5, null, 7];
    const rows = enc.encodeRows(hours.map((hour) => ({ hour })));
    const columns = new Float32Array(hours.length * 2);
    const unsure = enc.encodeColumns({ size: hours.length, columns: new Map([['hour', { type: 'float', values: Float64Array.from(hours, (h) => h ?? 0), nulls: Uint8Array.from(hours, (h) => (h === null ? 1 : 0)) }]]) }, columns);
    expect(Array.from(unsure)).toEqual(hours.map(() => 0));
    const expected = Float32Array.from(hours.flatMap((h) => (h === null ? [0, 0] : [Math.sin(h * scale), Math.cos(h * scale)])));
    // Bit for bit, the sign of a zero included.
    expect(Array.from(rows).map((v) => Object.is(v, -0) ? '-0' : v)).toEqual(Array.from(expected).map((v) => Object.is(v, -0) ? '-0' : v));
    expect(Array.from(columns).map((v) => Object.is(v, -0) ? '-0' : v)).toEqual(Array.from(expected).map((v) => Object.is(v, -0) ? '-0' : v));
  });

  it('gives the same encoding after the signature round-trips through JSON (as the registry stores it)', () => {
    const sig = fitted();
    const again = createEncoder(ModelSignatureSchema.parse(JSON.parse(JSON.stringify(sig))));
    expect(Array.from(again.encodeRows(training))).toEqual(Array.from(createEncoder(sig).encodeRows(training)));
  });

  it('writes at an offset and refuses to write past the end', () => {
    const enc = createEncoder(fitted());
    const out = new Float32Array(enc.width * 2).fill(7);
    enc.encodeRow(training[0] as FeatureRow, out, enc.width);
    expect(out[0]).toBe(7);
    expect(out[enc.width + 3]).toBe(1); // origin=SFO
    expect(() => enc.encodeRow(training[0] as FeatureRow, out, enc.width + 1)).toThrow(/do not fit/);
  });

  it('accepts booleans for bool features, and int categories as their string form', () => {
    const sig = fitSignature(
      [
        { name: 'holiday', dtype: 'bool', encoding: 'standardize' },
        { name: 'hub', dtype: 'bool', encoding: 'one_hot' },
      ],
      { holiday: { count: 4, mean: 0.25, std: 0.5 }, hub: { categories: ['true', 'false'] } },
      output,
    );
    expect(Array.from(createEncoder(sig).encodeRows([{ holiday: true, hub: false }]))).toEqual([1.5, 0, 1]);
  });
});

describe('bins: piecewise linear encoding over quantile bins', () => {
  const binSpecs: FeatureSpec[] = [{ name: 'delay', dtype: 'float', encoding: 'bins', bins: 4, missingIndicator: true }];
  // 0..99 once each: quartile edges at the values of rank ceil(q·100).
  const rows: FeatureRow[] = Array.from({ length: 100 }, (_, i) => ({ delay: 99 - i }));

  it('takes the edges from the train split\'s quantiles (nearest rank, as percentile_disc)', () => {
    const stats = computeStats([...rows, { delay: null }], binSpecs);
    expect(stats.delay).toEqual({ count: 100, quantiles: [0, 24, 49, 74, 99] });
    const signature = fitSignature(binSpecs, stats, output);
    expect(signature.inputs[0]?.encoding).toEqual({ kind: 'bins', edges: [0, 24, 49, 74, 99], missingIndicator: true });
  });

  it('encodes 1 for every bin below the value, the fraction of its own bin, 0 above; the ends extend; null is all zeros and missing', () => {
    const encoder = createEncoder(fitSignature(binSpecs, computeStats(rows, binSpecs), output));
    expect(encoder.columns).toEqual(['delay:bin0', 'delay:bin1', 'delay:bin2', 'delay:bin3', 'delay:missing']);
    const at = (delay: number | null) => Array.from(encoder.encodeRows([{ delay }]));
    expect(at(0)).toEqual([0, 0, 0, 0, 0]);
    expect(at(12)).toEqual([0.5, 0, 0, 0, 0]);
    expect(at(24)).toEqual([1, 0, 0, 0, 0]);
    expect(at(61.5)).toEqual([1, 1, 0.5, 0, 0]);
    expect(at(99)).toEqual([1, 1, 1, 1, 0]);
    // Past the ends: the first bin goes negative, the last past 1 (the value's distance still shows).
    expect(at(-24)).toEqual([-1, 0, 0, 0, 0]);
    expect(at(124)).toEqual([1, 1, 1, 2, 0]);
    expect(at(null)).toEqual([0, 0, 0, 0, 1]);
  });

  it('merges bins whose quantiles repeat, and keeps one bin for a constant column', () => {
    const skewed = [...Array.from({ length: 90 }, () => ({ delay: 0 })), ...Array.from({ length: 10 }, (_, i) => ({ delay: i + 1 }))];
    expect(fitSignature(binSpecs, computeStats(skewed, binSpecs), output).inputs[0]?.encoding).toMatchObject({ edges: [0, 10] });
    const constant = fitSignature(binSpecs, computeStats([{ delay: 5 }, { delay: 5 }], binSpecs), output);
    expect(constant.inputs[0]?.encoding).toMatchObject({ edges: [5, 6] });
    expect(Array.from(createEncoder(constant).encodeRows([{ delay: 5 }]))).toEqual([0, 0]);
  });
});

describe('validateRow', () => {
  const enc = createEncoder(fitted());
  const good = training[0] as FeatureRow;

  it('accepts a good row and nulls, ignoring extra columns', () => {
    expect(enc.validateRow(good)).toEqual([]);
    expect(enc.validateRow({ distance: null, origin_delay_7d: null, origin: null, hour: null, weekday: null, event_time: new Date(), delayed: true })).toEqual([]);
  });

  it('lists every problem: absent feature, wrong type, NaN, Infinity, non-integer int', () => {
    const problems = enc.validateRow({ distance: '120.5', origin_delay_7d: Number.NaN, origin: 42, hour: 3.5, extra: 1 });
    expect(problems).toEqual([
      'distance: expected a float, got string "120.5"',
      'origin_delay_7d: expected a float, got NaN',
      'origin: expected a string, got 42',
      'hour: expected an int, got 3.5',
      'weekday: missing (send null for an unknown value)',
    ]);
    expect(enc.validateRow({ ...good, distance: Number.POSITIVE_INFINITY })).toEqual(['distance: expected a float, got Infinity']);
    expect(enc.validateRow({ ...good, distance: true })).toEqual(['distance: expected a float, got boolean']);
    expect(enc.validateRow([] as unknown as FeatureRow)).toEqual(['a row must be an object of feature values']);
  });

  it('agrees with encodeRow: a row encodes if and only if it validates', () => {
    const rows: FeatureRow[] = [good, { ...good, hour: '6' }, { ...good, weekday: null }, { ...good, origin: undefined }, { ...good, distance: -0 }, { ...good, weekday: 1.5 }];
    const out = new Float32Array(enc.width);
    for (const row of rows) {
      const valid = enc.validateRow(row).length === 0;
      if (valid) expect(() => enc.encodeRow(row, out)).not.toThrow();
      else expect(() => enc.encodeRow(row, out)).toThrow(FtiError);
    }
  });
});

describe('toBatches and readAhead', () => {
  const sig = fitSignature([{ name: 'x', dtype: 'float', encoding: 'standardize' }], { x: { count: 10, mean: 0, std: 1 } }, output);
  const enc = createEncoder(sig);
  const rows = (n: number) => Array.from({ length: n }, (_, i) => ({ x: i, delayed: i % 2 === 0 }));

  it('encodes rows into full batches and a smaller last one, with 0/1 labels', async () => {
    const batches = await collect(toBatches(rows(10), enc, { label: 'delayed', batchSize: 4 }));
    expect(batches.map((b) => b.size)).toEqual([4, 4, 2]);
    expect(batches.map((b) => [b.x.length, b.y.length])).toEqual([
      [4, 4],
      [4, 4],
      [2, 2],
    ]);
    expect(Array.from(batches[2]?.x ?? [])).toEqual([8, 9]);
    expect(Array.from(batches[0]?.y ?? [])).toEqual([1, 0, 1, 0]);
  });

  it('shuffles through a bounded buffer: same rows, another order, reproducible by seed', async () => {
    const xs = async (seed: number) => (await collect(toBatches(rows(100), enc, { label: 'delayed', batchSize: 16, shuffleBuffer: 32, seed }))).flatMap((b: Batch) => Array.from(b.x));
    const [a, b, c] = [await xs(1), await xs(1), await xs(2)];
    expect([...a].sort((p, q) => p - q)).toEqual(rows(100).map((r) => r.x));
    expect(a).not.toEqual(rows(100).map((r) => r.x));
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });

  it('accepts rows in chunks, as a cursor fetches them', async () => {
    const chunked = async function* () {
      yield rows(3);
      yield rows(10).slice(3, 5);
      yield { x: 5, delayed: false };
    };
    const batches = await collect(toBatches(chunked(), enc, { label: 'delayed', batchSize: 4 }));
    expect(batches.flatMap((batch) => Array.from(batch.x))).toEqual([0, 1, 2, 3, 4, 5]);
    expect(batches.map((batch) => batch.size)).toEqual([4, 2]);
  });

  it('rejects rows without a usable label', async () => {
    await expect(collect(toBatches([{ x: 1, delayed: null }], enc, { label: 'delayed', batchSize: 4 }))).rejects.toThrow(/row 0: label delayed must be a boolean or a finite number, got null/);
  });

  it('readAhead requests the next item early and closes the source when the consumer stops', async () => {
    const events: string[] = [];
    async function* source() {
      try {
        for (let i = 0; i < 5; i++) {
          events.push(`produce ${i}`);
          yield i;
        }
      } finally {
        events.push('closed');
      }
    }
    for await (const i of readAhead(source())) {
      events.push(`consume ${i}`);
      if (i === 1) break;
    }
    expect(events).toEqual(['produce 0', 'produce 1', 'consume 0', 'produce 2', 'consume 1', 'closed']);
  });
});

describe('encodeColumns', () => {
  // Every encoding, over columns typed as Postgres gives them (and as row objects from a cursor give them).
  const columnSpecs: FeatureSpec[] = [
    ...specs,
    { name: 'late', dtype: 'bool', encoding: 'standardize' },
    { name: 'load', dtype: 'float', encoding: 'bins', bins: 3, missingIndicator: true },
  ];
  const types: Record<string, NumberColumnType | 'text'> = { distance: 'float', origin_delay_7d: 'float', origin: 'text', hour: 'int', weekday: 'int', late: 'bool', load: 'float' };
  const fit: FeatureRow[] = training.map((r, i) => ({ ...r, late: i % 2 === 0, load: i * 0.25 }));
  const rows: FeatureRow[] = [
    ...fit,
    { distance: null, origin_delay_7d: null, origin: null, hour: null, weekday: null, late: null, load: null },
    { distance: Number.NaN, origin_delay_7d: 3, origin: 'JFK', hour: 23, weekday: 7, late: true, load: 0.9 },
    { distance: 50, origin_delay_7d: Number.POSITIVE_INFINITY, origin: 'SFO', hour: 1, weekday: 1, late: false, load: -1 },
    { distance: 50, origin_delay_7d: 1, origin: 'LAX', hour: 1, weekday: 2, late: false, load: Number.NEGATIVE_INFINITY },
  ];

  /** The rows as columns of the given types (a bool as 1/0), or of row values for a name left out. */
  function typed(of: readonly FeatureRow[], which: Record<string, NumberColumnType | 'text'>): ColumnBatch {
    const names = Object.keys(of[0] ?? {});
    const columns = new Map<string, Column>();
    for (const name of names) {
      const type = which[name];
      const values = of.map((r) => r[name]);
      if (type === undefined) columns.set(name, { type: 'value', values });
      else if (type === 'text') columns.set(name, { type, values: values as Array<string | null> });
      else columns.set(name, { type, values: Float64Array.from(values, (v) => (v === null ? 0 : Number(v))), nulls: Uint8Array.from(values, (v) => (v === null ? 1 : 0)) });
    }
    return { size: of.length, columns };
  }

  /** What scoring does with a batch: columns, then the row path for the flagged rows; per row its input or its problems. */
  function viaColumns(enc: ReturnType<typeof createEncoder>, batch: ColumnBatch): Array<number[] | string[]> {
    const x = new Float32Array(batch.size * enc.width).fill(7);
    const unsure = enc.encodeColumns(batch, x);
    return Array.from({ length: batch.size }, (_, i) => {
      if (!unsure[i]) return Array.from(x.subarray(i * enc.width, (i + 1) * enc.width));
      const row = rowOf(batch, i);
      const problems = enc.validateRow(row);
      return problems.length ? problems : Array.from(enc.encodeRows([row]));
    });
  }

  function viaRows(enc: ReturnType<typeof createEncoder>, of: readonly FeatureRow[]): Array<number[] | string[]> {
    return of.map((row) => {
      const problems = enc.validateRow(row);
      return problems.length ? problems : Array.from(enc.encodeRows([row]));
    });
  }

  for (const family of ['mlp', 'gbdt'] as const) {
    it(`encodes a batch exactly as its rows, and flags every row the rows refuse (${family})`, () => {
      const enc = createEncoder(fitSignature(columnSpecs, computeStats(fit, columnSpecs), output, family));
      const expected = viaRows(enc, rows);
      // A bad value is refused, each time for its own feature.
      expect(expected.filter((e) => typeof e[0] === 'string')).toEqual([[expect.stringMatching(/^distance: /)], [expect.stringMatching(/^origin_delay_7d: /)], [expect.stringMatching(/^load: /)]]);
      const batch = typed(rows, types);
      expect(viaColumns(enc, batch)).toEqual(expected);
      // From typed columns, good rows are written straight, not handed to the row path.
      const unsure = enc.encodeColumns(batch, new Float32Array(rows.length * enc.width));
      expect(Array.from(unsure)).toEqual(expected.map((e) => (typeof e[0] === 'string' ? 1 : 0)));
      // Row values (a cursor's rows), and columns of a type an input does not take as it is, go value by value: the same.
      expect(viaColumns(enc, columnsFromRows(rows))).toEqual(expected);
      expect(viaColumns(enc, typed(rows, { ...types, hour: 'float', late: 'int', weekday: 'float' }))).toEqual(viaRows(enc, rows.map((r) => ({ ...r, late: r.late === null ? null : Number(r.late) }))));
    });
  }

  it('flags whole numbers only where an int input reads a float column, and every row when a feature is absent', () => {
    const enc = createEncoder(fitSignature(specs, computeStats(training, specs), output));
    const batch = typed([...training, { ...training[0], hour: 3.5 }], types);
    expect(Array.from(enc.encodeColumns(typed([...training, { ...training[0], hour: 3.5 }], { ...types, hour: 'float' }), new Float32Array(5 * enc.width)))).toEqual([0, 0, 0, 0, 1]);
    expect(viaColumns(enc, typed([...training, { ...training[0], hour: 3.5 }], { ...types, hour: 'float' }))[4]).toEqual([expect.stringMatching(/^hour: expected an int, got 3.5/)]);
    const { hour: _, ...rest } = Object.fromEntries(batch.columns);
    expect(Array.from(enc.encodeColumns({ size: batch.size, columns: new Map(Object.entries(rest)) }, new Float32Array(5 * enc.width)))).toEqual([1, 1, 1, 1, 1]);
  });
});
