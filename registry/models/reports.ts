/**
 * Each model version's report: the self-contained HTML page (reports/) and the data
 * it was drawn from, one row per version. A report is derived from the version, so
 * writing one again replaces it; deleting the version deletes its report.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { assertName, assertVersionNumber } from './locks.ts';

/** Who made the report: the training pipeline at registration, or a later request (`fti models report`). */
export type ModelReportSource = 'training' | 'on_demand';

export interface ModelReportInput {
  html: string;
  /** What the page was drawn from (JSON): kept so the page can be drawn again. */
  data: unknown;
  source: ModelReportSource;
}

export interface StoredModelReport extends ModelReportInput {
  model: string;
  version: number;
  sizeBytes: number;
  generatedAt: Date;
}

interface ReportRow {
  html: string;
  data: unknown;
  source: ModelReportSource;
  generated_at: Date;
}

export async function saveModelReport(knex: Knex, name: string, version: number, report: ModelReportInput): Promise<StoredModelReport> {
  assertName(name, 'model name');
  assertVersionNumber(version);
  const { rows } = (await knex.raw(
    `insert into model_reports (model_version_id, html, data, source, generated_at)
     select v.id, :html, :data::jsonb, :source, now() from model_versions v join models m on m.id = v.model_id
     where m.name = :name and v.version = :version
     on conflict (model_version_id) do update set html = excluded.html, data = excluded.data, source = excluded.source, generated_at = excluded.generated_at
     returning html, data, source, generated_at`,
    { html: report.html, data: JSON.stringify(report.data), source: report.source, name, version },
  )) as { rows: ReportRow[] };
  const row = rows[0];
  if (!row) throw new FtiError(FailureType.NotFound, `model ${name} has no version ${version}: no report stored`, { model: name, version });
  return toReport(name, version, row);
}

/** Undefined when the version has no report yet (the version itself is not checked here). */
export async function getModelReport(knex: Knex, name: string, version: number): Promise<StoredModelReport | undefined> {
  assertName(name, 'model name');
  assertVersionNumber(version);
  const row = await knex('model_reports as r')
    .join('model_versions as v', 'v.id', 'r.model_version_id')
    .join('models as m', 'm.id', 'v.model_id')
    .where({ 'm.name': name, 'v.version': version })
    .first<ReportRow | undefined>('r.html', 'r.data', 'r.source', 'r.generated_at');
  return row ? toReport(name, version, row) : undefined;
}

function toReport(model: string, version: number, row: ReportRow): StoredModelReport {
  return { model, version, html: row.html, data: row.data, source: row.source, sizeBytes: Buffer.byteLength(row.html, 'utf8'), generatedAt: row.generated_at };
}
