/**
 * Smoke test on real data: 20k US flights (Jan–Mar 2001) from vega-datasets. Trains
 * on the earlier dates and scores the later ones, through the same path production
 * uses: specs → stats on the training split → signature → encoder → toBatches →
 * trainModel → collectPredictions → evaluateClassifier.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadBackend, type Tf } from '../ml/backend.ts';
import { toBatches } from '../ml/batches.ts';
import { createEncoder, fitSignature } from '../ml/encoding.ts';
import type { FeatureSpec } from '../ml/feature-spec.ts';
import { evaluateClassifier } from '../ml/metrics.ts';
import { buildModel, disposeModel } from '../ml/model.ts';
import { collectPredictions } from '../ml/predict.ts';
import { computeStats } from '../ml/stats.ts';
import { trainModel } from '../ml/train.ts';

interface Flight {
  date: string; // "2001/01/13 14:56"
  delay: number;
  distance: number;
  origin: string;
  destination: string;
}

interface FlightRow {
  [feature: string]: unknown;
  day: string;
  hour: number;
  weekday: number;
  distance: number;
  origin: string;
  origin_delay_rate: number | null;
  day_delay_rate: number | null;
  delayed: boolean;
}

const specs: FeatureSpec[] = [
  { name: 'hour', dtype: 'int', encoding: 'cyclical', period: 24 },
  { name: 'weekday', dtype: 'int', encoding: 'one_hot' },
  { name: 'distance', dtype: 'float', encoding: 'standardize' },
  { name: 'origin', dtype: 'string', encoding: 'one_hot', maxCategories: 30 },
  { name: 'origin_delay_rate', dtype: 'float', encoding: 'standardize', missingIndicator: true },
  { name: 'day_delay_rate', dtype: 'float', encoding: 'standardize', missingIndicator: true },
];

/**
 * Point-in-time features, in time order: the share of delayed flights among the
 * origin's previous 20 departures, and among all of today's earlier departures
 * (null without history). Flights in the same minute never see each other.
 */
function featurize(flights: Flight[]): FlightRow[] {
  const sorted = [...flights].sort((a, b) => (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  const recent = new Map<string, boolean[]>();
  const today = { day: '', flights: 0, delayed: 0 };
  const rows: FlightRow[] = [];
  let pending: Flight[] = [];
  const commit = () => {
    for (const f of pending) {
      const history = recent.get(f.origin) ?? [];
      history.push(f.delay > 15);
      if (history.length > 20) history.shift();
      recent.set(f.origin, history);
      today.flights += 1;
      today.delayed += f.delay > 15 ? 1 : 0;
    }
    pending = [];
  };
  for (const f of sorted) {
    if (pending.length > 0 && (pending[0] as Flight).date !== f.date) commit();
    const [day = '', time = ''] = f.date.split(' ');
    if (day !== today.day) Object.assign(today, { day, flights: 0, delayed: 0 });
    const [y, m, d] = day.split('/').map(Number);
    const history = recent.get(f.origin);
    rows.push({
      day,
      hour: Number(time.split(':')[0]),
      weekday: new Date(Date.UTC(y as number, (m as number) - 1, d)).getUTCDay(),
      distance: f.distance,
      origin: f.origin,
      origin_delay_rate: history ? history.filter(Boolean).length / history.length : null,
      day_delay_rate: today.flights > 0 ? today.delayed / today.flights : null,
      delayed: f.delay > 15,
    });
    pending.push(f);
  }
  return rows;
}

describe('flights smoke test (vega-datasets flights-20k)', () => {
  let tfjs: Tf;
  let rows: FlightRow[];

  beforeAll(async () => {
    tfjs = (await loadBackend('cpu', 'wasm')).tf;
    // The package exports only its JS entry; the data files sit next to build/.
    const file = path.join(path.dirname(createRequire(import.meta.url).resolve('vega-datasets')), '..', 'data', 'flights-20k.json');
    rows = featurize(JSON.parse(fs.readFileSync(file, 'utf8')) as Flight[]);
  });

  it('predicts delays > 15 min on later dates better than chance', async () => {
    const train = rows.filter((r) => r.day < '2001/03/10');
    const test = rows.filter((r) => r.day >= '2001/03/10');
    expect(train.length).toBeGreaterThan(14_000);
    expect(test.length).toBeGreaterThan(4_000);

    const signature = fitSignature(specs, computeStats(train, specs), { name: 'delayed', kind: 'binary_classifier' });
    const encoder = createEncoder(signature);
    const model = buildModel(tfjs, { hiddenUnits: [32, 16], learningRate: 0.003, l2: 1e-4, seed: 1 }, encoder.width, 'binary_classifier');
    const result = await trainModel({
      tf: tfjs,
      model,
      epochs: 6,
      // Rows arrive in time order, as from an ORDER BY event_time cursor; the buffer shuffles them.
      trainBatches: (epoch) => toBatches(train, encoder, { label: 'delayed', batchSize: 256, shuffleBuffer: 4096, seed: epoch }),
    });
    expect(result.epochsRun).toBe(6);

    const { labels, scores } = await collectPredictions(tfjs, model, toBatches(test, encoder, { label: 'delayed', batchSize: 1024 }));
    const metrics = evaluateClassifier(labels, scores);
    expect(metrics.count).toBe(test.length);
    expect(metrics.auc).toBeGreaterThan(0.55);
    disposeModel(model);
  });
});
