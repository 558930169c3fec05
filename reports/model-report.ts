/**
 * A model version's report, made and stored: collect the data (collect.ts), draw the
 * page (html.ts), keep both with the version (ModelRegistry.saveReport). The training
 * pipeline makes it at registration (activities/model-report.ts); `fti models report`
 * makes it on demand for a version registered before reports existed.
 */
import type { ModelReportSource, StoredModelReport } from '../registry/models/index.ts';
import { collectReportData, type CollectOptions, type ReportStores } from './collect.ts';
import { renderModelReport } from './html.ts';

export async function generateModelReport(stores: ReportStores, model: string, version: number, options: CollectOptions & { source: ModelReportSource }): Promise<StoredModelReport> {
  const record = await stores.registry.getModelVersion(model, version);
  const data = await collectReportData(stores, record, options);
  const html = await renderModelReport(data);
  return stores.registry.saveReport(model, version, { html, data, source: options.source });
}

/** Where `fti serve` answers with a version's report. */
export function reportRoute(model: string, version: number): string {
  return `/models/${model}/${version}/report`;
}

/** The file `fti models report` writes by default. */
export function reportFileName(model: string, version: number): string {
  return `${model}-v${version}-report.html`;
}

export type { ReportStores } from './collect.ts';
export type { ModelReportData } from './model-report-data.ts';
export { PLOT_SECTIONS } from './html.ts';
