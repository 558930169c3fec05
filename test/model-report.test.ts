/**
 * Model reports (real Temporal + Postgres): the training pipeline stores a report with
 * the version it registers and links it from its result; `fti models report` writes it
 * (and makes one for a version registered before reports); `fti serve` answers it at
 * GET /models/{name}/{version}/report; headless Chromium opens it with every plot drawn
 * as SVG and nothing fetched.
 *
 * FTI_REPORT_SCREENSHOT=docs/model-report.png also writes the README's screenshot of
 * the report's top (1200 × 1440 px) from this run's model (trained on two weeks then).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Knex } from 'knex';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import project, { flightDelays } from '../examples/flights/definitions.ts';
import { loadBackend, type LoadedBackend } from '../ml/backend.ts';
import { classifierCurves } from '../ml/evaluation-curves.ts';
import { createKnex } from '../registry/db/index.ts';
import { ModelRegistry } from '../registry/models/index.ts';
import { TrainingStore } from '../registry/training/index.ts';
import type { ModelReportData } from '../reports/model-report.ts';
import { PLOT_SECTIONS } from '../reports/model-report.ts';
import { buildServer, type PredictionServer } from '../serving/server.ts';
import { trainingPipeline } from '../workflows/index.ts';
import type { TrainingPipelineResult } from '../workflows/training-pipeline.ts';
import { runFti } from './helpers/cli.ts';
import { ingestFlights } from './helpers/flights.ts';
import { registerModelVersion } from './helpers/models.ts';
import { REPO_ROOT } from './helpers/processes.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const SCREENSHOT = process.env.FTI_REPORT_SCREENSHOT;
// Two days of flights: about 30k labelled departures. The README's screenshot is taken
// of a model trained on two weeks (about 110k), whose plots say more.
const window = SCREENSHOT ? { start: '2001-01-03T00:00:00.000Z', end: '2001-01-17T00:00:00.000Z' } : { start: '2001-01-08T00:00:00.000Z', end: '2001-01-10T00:00:00.000Z' };
const params = { hiddenUnits: [16], epochs: 3, batchSize: 1024, seed: 7 };
const MODEL = 'report_delay';
/** A version registered straight into the registry, as before reports: it has none stored. */
const LEGACY = 'report_legacy';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

describe('evaluation curves of a test split', () => {
  // Four rows: scores 0.9 (positive), 0.6 (negative), 0.4 (positive), 0.1 (negative).
  const labels = [1, 0, 1, 0];
  const scores = [0.9, 0.6, 0.4, 0.1];

  it('the confusion matrix counts rows at or above the threshold as positive', () => {
    expect(classifierCurves(labels, scores, 0.5).confusion).toEqual({ threshold: 0.5, truePositives: 1, falsePositives: 1, trueNegatives: 1, falseNegatives: 1 });
    expect(classifierCurves(labels, scores, 0.4).confusion).toEqual({ threshold: 0.4, truePositives: 2, falsePositives: 1, trueNegatives: 1, falseNegatives: 0 });
  });

  it('the ROC curve walks the thresholds down from (0, 0) to (1, 1); calibration bins hold each score’s rows', () => {
    const curves = classifierCurves(labels, scores);
    expect(curves.roc.map((p) => [p.fpr, p.tpr])).toEqual([
      [0, 0],
      [0, 0.5],
      [0.5, 0.5],
      [0.5, 1],
      [1, 1],
    ]);
    expect(curves.calibration.map((b) => [b.lo, b.count, b.meanActual])).toEqual([
      [0.1, 1, 0],
      [0.4, 1, 1],
      [0.6, 1, 0],
      [0.9, 1, 1],
    ]);
  });
});

describe('model reports: stored at registration, written by the CLI, served, and drawn in a browser', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let backend: LoadedBackend;
  let cpu: RunningWorker;
  let gpu: RunningWorker;
  let registry: ModelRegistry;
  let servingKnex: Knex;
  let server: PredictionServer;
  let base: string;
  let trained: TrainingPipelineResult;
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-report-'));
  const uiUrl = inject('temporalUiUrl');

  beforeAll(async () => {
    // The workers (and the CLI, which inherits this environment) link runs in the Web UI.
    process.env.TEMPORAL_UI_URL = uiUrl;
    db = await createTestDb('report');
    temporal = await createTestTemporal('report');
    backend = await loadBackend('cpu', 'wasm');
    cpu = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    gpu = await startInProcessWorker('gpu', { prefix: temporal.prefix, knex: db.knex, project, backend });
    registry = new ModelRegistry({ knex: db.knex });
    await ingestFlights(temporal, window);
    trained = await temporal.client.workflow.execute(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('train_report'),
      args: [{ featureView: 'flight_delays', model: MODEL, params, ...window }],
    });
    await registerModelVersion(db.knex, backend.tf, { model: LEGACY, view: flightDelays, ...window, seed: 3, epochs: 1 });
    // `fti serve` reads as the serving role.
    servingKnex = createKnex({ url: db.urlFor('serving'), schema: db.schema, applicationName: 'fti-test-report-serve' });
    server = await buildServer({ knex: servingKnex, tf: backend.tf, databaseUrl: db.urlFor('serving'), schema: db.schema, log: () => {} });
    base = await server.app.listen({ port: 0, host: '127.0.0.1' });
  });

  afterAll(async () => {
    await server?.app.close();
    await servingKnex?.destroy();
    await gpu?.stop();
    await cpu?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('the training pipeline stores the report with the version and links it from its result', async () => {
    expect(trained.version).toBe(1);
    expect(trained.report).toEqual({ model: MODEL, version: 1, route: `/models/${MODEL}/1/report`, command: `fti models report ${MODEL}@1`, sizeBytes: expect.any(Number) });
    const stored = await registry.getReport(MODEL, 1);
    expect(stored?.source).toBe('training');
    expect(stored?.sizeBytes).toBe(trained.report?.sizeBytes);
    expect(stored?.html).toMatch(/^<!doctype html>/);

    const data = stored?.data as ModelReportData;
    expect(data.metrics).toEqual(trained.metrics);
    // The loss of every epoch, kept from the run's checkpoint before it was dropped.
    expect('value' in data.history && data.history.value).toMatchObject({ unit: 'epoch', points: [{ step: 1 }, { step: 2 }, { step: 3 }] });
    expect('value' in data.history && data.history.value.points.every((p) => Number.isFinite(p.loss) && Number.isFinite(p.valLoss))).toBe(true);
    // ROC, calibration and confusion come from the test split, scored again: as many rows as the dataset's test split.
    const evaluation = 'value' in data.evaluation ? data.evaluation.value : undefined;
    expect(evaluation?.kind).toBe('binary_classifier');
    if (evaluation?.kind !== 'binary_classifier') throw new Error('no classifier curves');
    expect(evaluation.rows).toBe(trained.rowCounts.test);
    const c = evaluation.confusion;
    expect(c.truePositives + c.falsePositives + c.trueNegatives + c.falseNegatives).toBe(trained.rowCounts.test);
    expect(c.threshold).toBe(trained.metrics.threshold);
    expect((c.truePositives + c.trueNegatives) / trained.rowCounts.test).toBeCloseTo(trained.metrics.accuracy ?? -1, 6);
    expect(evaluation.roc.at(0)).toMatchObject({ fpr: 0, tpr: 0 });
    expect(evaluation.roc.at(-1)).toMatchObject({ fpr: 1, tpr: 1 });
    // Every feature of the view, train and test on the same bins.
    const distributions = 'value' in data.distributions ? data.distributions.value : [];
    expect(distributions.map((d) => d.feature)).toEqual(flightDelays.features.map((f) => f.name));
    for (const d of distributions) {
      expect(d.rows).toEqual({ train: trained.rowCounts.train, test: trained.rowCounts.test });
      expect(d.bins.reduce((n, b) => n + b.test, 0) + d.missing.test).toBe(trained.rowCounts.test);
    }
    // Bin by bin (all features are counted in one pass): the test split's rows, counted here, land in the same bins.
    const dataset = await new TrainingStore({ knex: db.knex }).dataset(trained.trainingDatasetId);
    const testRows: Array<Record<string, unknown>> = [];
    for await (const batch of new TrainingStore({ knex: db.knex }).streamSplit(dataset, 'test', ['hour', 'origin'])) testRows.push(...batch);
    const hour = distributions.find((d) => d.feature === 'hour');
    expect(hour?.bins.length).toBeGreaterThan(1);
    const last = hour?.bins.at(-1);
    for (const b of hour?.bins ?? []) {
      const inBin = (v: number) => v >= (b.lo as number) && (v < (b.hi as number) || (b === last && v === b.hi));
      expect(b.test, `hour ${b.label}`).toBe(testRows.filter((r) => r.hour !== null && inBin(r.hour as number)).length);
    }
    const origin = distributions.find((d) => d.feature === 'origin');
    const named = new Set(origin?.bins.map((b) => b.label));
    expect(named.has('(other)')).toBe(true);
    for (const b of origin?.bins ?? []) {
      const expected = b.label === '(other)' ? testRows.filter((r) => r.origin !== null && !named.has(r.origin as string)).length : testRows.filter((r) => r.origin === b.label).length;
      expect(b.test, `origin ${b.label}`).toBe(expected);
    }
    expect(data.lineage).toMatchObject({ trainingDatasetId: trained.trainingDatasetId, workflowId: expect.stringMatching(/^train_report_/), codeVersion: expect.any(String) });
    expect(data.lineage.temporalUiUrl).toBe(`${uiUrl}/namespaces/default/workflows/${encodeURIComponent(data.lineage.workflowId ?? '')}/${data.lineage.runId}/history`);
    expect(data.lineage.featureGroupCommits).toEqual(trained.commits);
  });

  it('a gradient-boosted version’s report plots its loss per boosting round', async () => {
    const boosted = await temporal.client.workflow.execute(trainingPipeline, {
      taskQueue: temporal.cpuQueue,
      workflowId: uniqueId('train_report_gbdt'),
      args: [{ featureView: 'flight_delays', model: MODEL, trainingDatasetId: trained.trainingDatasetId, params: { family: 'gbdt', trees: 12, maxLeaves: 7, minLeafRows: 20 } }],
    });
    expect(boosted.report?.route).toBe(`/models/${MODEL}/2/report`);
    const data = (await registry.getReport(MODEL, 2))?.data as ModelReportData;
    expect(data.family).toBe('gbdt');
    // The rounds kept (up to the best on validation), each with its validation loss.
    const history = 'value' in data.history ? data.history.value : undefined;
    expect(history?.unit).toBe('round');
    expect(history?.points.map((p) => p.step)).toEqual(Array.from({ length: boosted.training.epochs }, (_, i) => i + 1));
    expect(history?.points.every((p) => Number.isFinite(p.valLoss))).toBe(true);
    expect('value' in data.evaluation && data.evaluation.value.rows).toBe(trained.rowCounts.test);
  });

  it('`fti models report NAME@VERSION --out FILE` writes the stored report and prints its path; @latest resolves too', async () => {
    const file = path.join(scratch, 'out', 'report.html');
    const run = await runFti(['models', 'report', `${MODEL}@1`, '--out', file], { prefix: temporal.prefix, schema: db.schema });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe(file);
    expect(fs.readFileSync(file, 'utf8')).toBe((await registry.getReport(MODEL, 1))?.html);

    const latest = await runFti(['models', 'report', `${MODEL}@latest`, '--out', path.join(scratch, 'latest.html'), '--json'], { prefix: temporal.prefix, schema: db.schema });
    expect(latest.code, latest.stderr).toBe(0);
    expect(JSON.parse(latest.stdout)).toMatchObject({ model: MODEL, version: 2, generated: false, file: path.join(scratch, 'latest.html') });

    const missing = await runFti(['models', 'report', `${MODEL}@7`, '--out', path.join(scratch, 'none.html')], { prefix: temporal.prefix, schema: db.schema });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/version 7|no version|not found/i);
    expect(fs.existsSync(path.join(scratch, 'none.html'))).toBe(false);
  });

  it('GET /models/{name}/{version}/report answers the stored page; an unknown version or model is a JSON 404', async () => {
    const page = await fetch(`${base}/models/${MODEL}/1/report`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toBe((await registry.getReport(MODEL, 1))?.html);

    for (const [url, code] of [
      [`/models/${MODEL}/9/report`, 'not_found'],
      ['/models/no_such_model/1/report', 'not_found'],
      // Registered before reports: the server only reads, and says how to make one.
      [`/models/${LEGACY}/1/report`, 'report_not_found'],
    ] as const) {
      const answer = await fetch(`${base}${url}`);
      expect(answer.status, url).toBe(404);
      expect(answer.headers.get('content-type')).toMatch(/^application\/json/);
      const body = (await answer.json()) as { error: string; message: string };
      expect(body.error, url).toBe(code);
      if (code === 'report_not_found') expect(body.message).toContain(`fti models report ${LEGACY}@1`);
    }
  });

  it('a version registered before reports gets one on demand from the CLI (without the loss history), which the server then answers', async () => {
    const file = path.join(scratch, 'legacy.html');
    const run = await runFti(['models', 'report', LEGACY, '--out', file, '--json'], { prefix: temporal.prefix, schema: db.schema, timeoutMs: 120_000 });
    expect(run.code, run.stderr).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ model: LEGACY, version: 1, generated: true, file });
    const stored = await registry.getReport(LEGACY, 1);
    expect(stored?.source).toBe('on_demand');
    const data = stored?.data as ModelReportData;
    expect('missing' in data.history && data.history.missing).toMatch(/^not recorded/);
    expect('value' in data.evaluation).toBe(true);
    const html = fs.readFileSync(file, 'utf8');
    expect(html).toBe(stored?.html);
    expect(html).toContain('not recorded');
    const served = await fetch(`${base}/models/${LEGACY}/1/report`);
    expect(served.status).toBe(200);
  });

  it('opens in headless Chromium: every plot section holds SVG marks, no console errors, no request but the page itself', async () => {
    const browser: Browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
      page.on('request', (r) => requests.push(r.url()));
      const url = `${base}/models/${MODEL}/1/report`;
      const response = await page.goto(url, { waitUntil: 'load' });
      expect(response?.status()).toBe(200);
      expect(await page.title()).toBe(`${MODEL} v1 · model report`);

      for (const section of PLOT_SECTIONS) {
        const svgs = page.locator(`section[data-plot="${section}"] svg`);
        expect(await svgs.count(), section).toBeGreaterThan(0);
        // Vega draws each mark as a group of the mark's role; it holds the drawn shapes.
        const shapes = await page.locator(`section[data-plot="${section}"] svg g.role-mark > :is(path, rect, line, text, circle)`).count();
        expect(shapes, `${section} has drawn marks`).toBeGreaterThan(0);
        expect(await page.locator(`section[data-plot="${section}"] .missing`).count(), `${section} says nothing is missing`).toBe(0);
      }
      // One feature figure per feature of the view, each with both splits' bars.
      expect(await page.locator('section[data-plot="distributions"] figure').count()).toBe(flightDelays.features.length);
      expect(await page.locator('#lineage a').getAttribute('href')).toMatch(new RegExp(`^${uiUrl}/namespaces/default/workflows/`));
      const box = await page.locator('section[data-plot="roc"] svg').first().boundingBox();
      expect(box?.width).toBeGreaterThan(100);

      expect(problems).toEqual([]);
      expect(requests).toEqual([url]);

      if (SCREENSHOT) {
        const out = path.resolve(REPO_ROOT, SCREENSHOT);
        fs.mkdirSync(path.dirname(out), { recursive: true });
        // The top of the page: metrics, the curves, the loss and the first features (the whole page is ~3,000 px tall).
        await page.screenshot({ path: out, fullPage: true, clip: { x: 0, y: 0, width: 1200, height: 1440 } });
      }
    } finally {
      await browser.close();
    }
  });
});
