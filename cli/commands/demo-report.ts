/**
 * The demo's last step: write its model version's report (made by the training
 * pipeline at registration) under the data directory, `<FTI_DATA_DIR>/reports/`.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FtiConfig } from '../../core/config.ts';
import { createKnex } from '../../registry/db/index.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { reportFileName } from '../../reports/model-report.ts';

/** The written file's path; null when the version has no stored report. */
export async function writeDemoReport(config: FtiConfig, databaseUrl: string, model: string, version: number): Promise<string | null> {
  const knex = createKnex({ url: databaseUrl, schema: config.schema, poolMax: 1, applicationName: 'fti-demo' });
  try {
    const report = await new ModelRegistry({ knex }).getReport(model, version);
    if (!report) return null;
    const file = path.join(config.dataDir, 'reports', reportFileName(model, version));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, report.html);
    return file;
  } finally {
    await knex.destroy();
  }
}
