/**
 * `fti models report NAME[@VERSION|@ALIAS] [--out FILE]`: writes a version's report (a
 * self-contained HTML page) to a file and prints the file's path. The report stored with
 * the version is written as is; a version registered before reports were made gets
 * one made now (and stored), without the loss history its training run no longer has.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { loadBackend, type Tf } from '../../ml/backend.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { LATEST, ModelRegistry } from '../../registry/models/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { generateModelReport, reportFileName } from '../../reports/model-report.ts';
import { withKnex } from '../db.ts';
import type { ModelRefArg } from './models.ts';

export interface WrittenReport {
  file: string;
  model: string;
  version: number;
  sizeBytes: number;
  /** True when the version had no stored report and one was made now. */
  generated: boolean;
  generatedAt: string;
}

export function registerModelReportCommand(models: Command, parseModelRef: (value: string) => ModelRefArg): void {
  models
    .command('report')
    .description('write a version’s report (metrics, ROC, calibration, confusion matrix, loss per epoch, feature distributions, lineage) as one HTML file and print its path')
    .argument('<ref>', `NAME, NAME@VERSION or NAME@ALIAS (NAME alone means NAME@${LATEST})`, parseModelRef)
    .option('--out <file>', 'the file to write (default: ./NAME-vVERSION-report.html)')
    .option('--json', 'print JSON')
    .action(async (ref: ModelRefArg, opts: { out?: string; json?: boolean }) => {
      const written = await writeModelReport(ref, opts.out);
      if (written.generated) console.error(`${written.model} v${written.version} had no stored report: made one now (stored with the version)`);
      console.log(opts.json ? JSON.stringify(written, null, 2) : written.file);
    });
}

async function writeModelReport(ref: ModelRefArg, out: string | undefined): Promise<WrittenReport> {
  return withKnex(async (knex, config) => {
    const registry = new ModelRegistry({ knex });
    const version = await registry.resolveModelVersion(ref.name, ref.ref);
    let report = await registry.getReport(version.model, version.version);
    const generated = report === undefined;
    if (!report) {
      let tf: Tf | undefined;
      const temporalUi = config.temporalUiUrl ? { url: config.temporalUiUrl, namespace: config.temporalNamespace } : undefined;
      report = await generateModelReport(
        { registry, features: new FeatureStore({ knex }), training: new TrainingStore({ knex }), tf: async () => (tf ??= (await loadBackend('cpu', config.tfjsBackend)).tf) },
        version.model,
        version.version,
        { source: 'on_demand', ...(temporalUi ? { temporalUi } : {}) },
      );
    }
    const file = path.resolve(out ?? reportFileName(version.model, version.version));
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, report.html);
    return { file, model: version.model, version: version.version, sizeBytes: report.sizeBytes, generated, generatedAt: report.generatedAt.toISOString() };
  });
}
