import { describe, expect, it } from 'vitest';
import { evaluateClassifier, evaluateRegressor } from '../ml/metrics.ts';

/** The O(n²) definition of AUC, to check the O(n log n) one against. */
function bruteForceAuc(labels: number[], scores: number[]): number {
  let wins = 0;
  let pairs = 0;
  labels.forEach((yi, i) => {
    if (yi !== 1) return;
    labels.forEach((yj, j) => {
      if (yj !== 0) return;
      pairs += 1;
      const [si, sj] = [scores[i] as number, scores[j] as number];
      wins += si > sj ? 1 : si === sj ? 0.5 : 0;
    });
  });
  return wins / pairs;
}

describe('evaluateClassifier', () => {
  it('matches a hand-computed example without ties', () => {
    // positives 0.35 (beats 0.1, loses to 0.4) and 0.8 (beats both): 3 of 4 pairs.
    const m = evaluateClassifier([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]);
    expect(m.auc).toBeCloseTo(0.75, 12);
  });

  it('counts tied scores as half a win, and computes log loss, accuracy, precision and recall by hand', () => {
    const labels = [0, 1, 0, 1, 1];
    const scores = [0.2, 0.2, 0.5, 0.5, 0.9];
    const m = evaluateClassifier(labels, scores);
    // positive 0.2: tie with 0.2 (½), loses to 0.5 → 0.5; positive 0.5: beats 0.2, ties 0.5 → 1.5; positive 0.9: 2.  4 / 6.
    expect(m.auc).toBeCloseTo(4 / 6, 12);
    // -(ln .2 + ln .5 + ln .9 + ln .8 + ln .5) / 5
    expect(m.logLoss).toBeCloseTo((1.6094379124341003 + 0.6931471805599453 + 0.10536051565782628 + 0.2231435513142097 + 0.6931471805599453) / 5, 12);
    // predicted at >= 0.5: [0, 0, 1, 1, 1] → TP 2, FP 1, FN 1, TN 1
    expect(m).toMatchObject({ count: 5, positives: 3, accuracy: 3 / 5, threshold: 0.5 });
    expect(m.precision).toBeCloseTo(2 / 3, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
  });

  it('gives 1 for perfect ranking, 0 for inverted ranking and 0.5 when every score ties', () => {
    expect(evaluateClassifier([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]).auc).toBe(1);
    expect(evaluateClassifier([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]).auc).toBe(0);
    expect(evaluateClassifier([1, 0, 1, 0], [0.3, 0.3, 0.3, 0.3]).auc).toBe(0.5);
  });

  it('agrees with the pairwise definition on random data with many ties', () => {
    let seed = 42;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const labels = Array.from({ length: 400 }, () => (random() < 0.3 ? 1 : 0));
    const scores = labels.map((y) => Math.round((random() * 0.7 + y * 0.3) * 20) / 20); // 21 distinct values
    expect(evaluateClassifier(labels, Float32Array.from(scores)).auc).toBeCloseTo(bruteForceAuc(labels, Array.from(Float32Array.from(scores))), 12);
  });

  it('clips scores of exactly 0 and 1 so log loss stays finite', () => {
    const m = evaluateClassifier([0, 1], [1, 0]);
    expect(m.logLoss).toBeCloseTo(-Math.log(1e-15), 6);
    expect(evaluateClassifier([0, 1], [0, 1]).logLoss).toBeLessThan(1e-14);
  });

  it('reports undefined ratios as null rather than NaN', () => {
    const m = evaluateClassifier([0, 0], [0.1, 0.2]);
    expect(m).toMatchObject({ auc: null, precision: null, recall: null, accuracy: 1 });
    expect(JSON.parse(JSON.stringify(m))).toEqual(m);
  });

  it('rejects labels other than 0/1, scores outside [0, 1], mismatched lengths and empty input', () => {
    expect(() => evaluateClassifier([0, 2], [0.1, 0.2])).toThrow(/label 1 is 2/);
    expect(() => evaluateClassifier([0, 1], [0.1, Number.NaN])).toThrow(/score 1 is NaN/);
    expect(() => evaluateClassifier([0, 1], [0.1])).toThrow(/2 labels but 1 scores/);
    expect(() => evaluateClassifier([], [])).toThrow(/empty/);
  });

  it('handles a million scores quickly', () => {
    const n = 1_000_000;
    const labels = new Float32Array(n);
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      labels[i] = i % 3 === 0 ? 1 : 0;
      scores[i] = ((i * 7919) % 1000) / 1000;
    }
    const started = performance.now();
    const m = evaluateClassifier(labels, scores);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(m.count).toBe(n);
    expect(m.auc).toBeGreaterThan(0.45);
    expect(m.auc).toBeLessThan(0.55);
  });
});

describe('evaluateRegressor', () => {
  it('matches a hand-computed example', () => {
    // errors 0, 2, -3: MSE 13/3, MAE 5/3
    const m = evaluateRegressor([1, 2, 3], Float32Array.from([1, 4, 0]));
    expect(m.count).toBe(3);
    expect(m.rmse).toBeCloseTo(Math.sqrt(13 / 3), 12);
    expect(m.mae).toBeCloseTo(5 / 3, 12);
  });

  it('rejects non-finite values', () => {
    expect(() => evaluateRegressor([1, 2], [1, Number.POSITIVE_INFINITY])).toThrow(/prediction 1/);
  });
});
