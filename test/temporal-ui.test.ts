/**
 * A person's first touch: open the dev server's Temporal Web UI in a real browser,
 * fill "Start Workflow" with the values the README gives (workflow type, task queue,
 * a pasted JSON input), and see the pipeline complete, in the UI and through the
 * Temporal client.
 *
 * Debian's Chromium, driven by playwright-core. The network here is closed: the flags
 * keep Chromium from reaching out, and the test only talks to the local UI.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { FeaturePipelineResult } from '../activities/feature.ts';
import { defineFeatureGroup } from '../features/definitions.ts';
import { defineProject } from '../features/project.ts';
import { FeatureStore } from '../registry/feature-store/index.ts';
import { createTestDb, createTestTemporal, startInProcessWorker, uniqueId, type RunningWorker, type TestDb, type TestTemporal } from './helpers/services.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const TIMEOUT = 30_000;

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'fti-ui-'));
const at = (hour: number, minute = 0) => new Date(Date.UTC(2024, 8, 2, hour, minute)).toISOString();
const ordersFile = path.join(scratch, 'orders.ndjson');
const orders = Array.from({ length: 8 }, (_, i) => ({ shop: `shop_${i % 3}`, at: at(8 + Math.floor(i / 2), (i % 2) * 30), amount: 10 * (i + 1) }));
fs.writeFileSync(ordersFile, orders.map((o) => JSON.stringify(o)).join('\n'));

const shopOrders = defineFeatureGroup({
  name: 'shop_orders',
  version: 1,
  entityKeys: ['shop'],
  eventTime: 'at',
  features: { shop: 'string', at: 'timestamp', amount: 'float' },
  source: { kind: 'ndjson', path: ordersFile },
});

describe('Temporal UI: start a pipeline from "Start Workflow" (headless Chromium)', () => {
  let db: TestDb;
  let temporal: TestTemporal;
  let worker: RunningWorker;
  let browser: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    db = await createTestDb('ui');
    temporal = await createTestTemporal('ui');
    worker = await startInProcessWorker('cpu', { prefix: temporal.prefix, knex: db.knex, project: defineProject({ featureGroups: [shopOrders] }) });
    browser = await chromium.launchPersistentContext(path.join(scratch, 'profile'), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      timeout: TIMEOUT,
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    page.setDefaultTimeout(TIMEOUT);
  });

  afterAll(async () => {
    await browser?.close();
    await worker?.stop();
    await temporal?.close();
    await db?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('featurePipeline started with a pasted JSON input runs to completion', async () => {
    const uiUrl = inject('temporalUiUrl');
    expect(uiUrl, 'the test Temporal dev server runs with its Web UI').toMatch(/^http:\/\/(localhost|127\.0\.0\.1):\d+$/);
    const workflowId = uniqueId('ui-shop-orders');
    const input = { featureGroup: 'shop_orders', version: 1, start: at(8), end: at(10) };

    try {
      await page.goto(`${uiUrl}/namespaces/default/workflows`);
      await page.getByRole('button', { name: 'Start Workflow' }).click();
      await page.getByRole('heading', { name: 'Start a Workflow' }).waitFor();

      await page.getByLabel('Workflow ID').fill(workflowId);
      await page.getByLabel('Task Queue').fill(temporal.cpuQueue);
      await page.getByLabel('Workflow Type').fill('featurePipeline');
      // The input is a CodeMirror editor: paste into it, as a person would.
      const editor = page.locator('.cm-content');
      await editor.click();
      await editor.evaluate((el, text) => {
        const data = new DataTransfer();
        data.setData('text/plain', text);
        el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
      }, JSON.stringify(input, null, 2));
      expect(JSON.parse(await editor.innerText())).toEqual(input);

      // The page's own "Start Workflow" (the submit button) is the last one on the page.
      const submit = page.getByRole('button', { name: 'Start Workflow' }).last();
      await expectEnabled(submit);
      await submit.click();
      const started = page.getByRole('link', { name: 'Workflow started successfully' });
      await started.waitFor();
      await started.click();

      // The workflow's page: its id, then its status once the worker has run it.
      await page.getByText(workflowId).first().waitFor();
      await page.getByText('Completed', { exact: true }).first().waitFor({ timeout: 60_000 });
    } catch (err) {
      const shot = path.join(os.tmpdir(), `fti-ui-failure-${Date.now()}.png`);
      await page.screenshot({ path: shot, fullPage: true }).catch(() => undefined);
      throw new Error(`${(err as Error).message}\n(screenshot of the page: ${shot})`);
    }

    // The same run, seen through the Temporal client and the feature store.
    const handle = temporal.client.workflow.getHandle<(i: typeof input) => Promise<FeaturePipelineResult>>(workflowId);
    const description = await handle.describe();
    expect(description).toMatchObject({ type: 'featurePipeline', taskQueue: temporal.cpuQueue, status: { name: 'COMPLETED' } });
    const result = await handle.result();
    const inWindow = orders.filter((o) => o.at >= input.start && o.at < input.end);
    expect(result).toMatchObject({ featureGroup: 'shop_orders', version: 1, rowsIn: inWindow.length, rowsCommitted: inWindow.length });
    const store = new FeatureStore({ knex: db.knex });
    const [commit] = await store.commits(await store.group('shop_orders', 1), { status: 'committed' });
    expect(commit).toMatchObject({ id: result.commitId, workflowId, windowStart: new Date(input.start), windowEnd: new Date(input.end) });
  });
});

async function expectEnabled(locator: ReturnType<Page['locator']>): Promise<void> {
  const deadline = Date.now() + TIMEOUT;
  while (!(await locator.isEnabled())) {
    if (Date.now() > deadline) throw new Error('the Start Workflow button stayed disabled');
    await new Promise((r) => setTimeout(r, 100));
  }
}
