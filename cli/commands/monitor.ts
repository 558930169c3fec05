/**
 * `fti monitor drift MODEL[@REF] --start … --end …`: measures the drift of a model's
 * features in a window against its training data (activities/monitoring.ts), here and
 * now, as the worker role, and records it; the monitoringPipeline workflow does the
 * same on a worker (for a Temporal Schedule). `fti monitor list` shows recorded runs.
 *
 * `fti monitor skew MODEL[@REF] --start … --end …`: the feature vectors `fti serve`
 * logged in the window against the offline point-in-time vectors of the same entities
 * and request times (activities/skew.ts); the skewCheck workflow does the same on a
 * worker. Both exit 3 when they find something (an alert; a feature with mismatches).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { monitorDrift, withIsoTimes, type DriftReport } from '../../activities/monitoring.ts';
import { checkSkew, type SkewReport } from '../../activities/skew.ts';
import { IDENTIFIER } from '../../core/names.ts';
import { loadProject } from '../../features/project.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { ModelRegistry } from '../../registry/models/index.ts';
import { MonitoringStore } from '../../registry/monitoring/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { withKnex } from '../db.ts';
import { table } from '../format.ts';

export function registerMonitorCommands(program: Command): void {
  const monitor = program.command('monitor').description('feature drift of served models against their training data, and training/serving skew');
  monitor
    .command('drift')
    .description("measure each feature's drift (PSI, KS) in [start, end) against the model version's training data, and record it")
    .argument('<model>', 'NAME or NAME@ALIAS / NAME@VERSION (default alias: champion)', parseModel)
    .requiredOption('--start <time>', 'window start (ISO 8601)', parseTime)
    .requiredOption('--end <time>', 'window end (ISO 8601)', parseTime)
    .option('--json', 'print the run as JSON')
    .action(async (model: { name: string; ref?: string | number }, opts: { start: string; end: string; json?: boolean }) => {
      const report = await withKnex(async (knex, config) => {
        const project = await loadProject(config.definitionsModule);
        return monitorDrift(
          { features: new FeatureStore({ knex }), training: new TrainingStore({ knex }), registry: new ModelRegistry({ knex }), monitoring: new MonitoringStore({ knex }), views: project.featureViews },
          { model: model.name, ref: model.ref, start: opts.start, end: opts.end },
        );
      });
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatDrift(report));
      if (report.alerts.length) process.exitCode = 3;
    });
  monitor
    .command('skew')
    .description('compare the feature vectors the prediction server logged in [start, end) with the offline point-in-time vectors of the same entities and times, and record it')
    .argument('<model>', 'NAME or NAME@ALIAS / NAME@VERSION (default alias: champion)', parseModel)
    .requiredOption('--start <time>', 'served from (ISO 8601)', parseTime)
    .requiredOption('--end <time>', 'served before (ISO 8601)', parseTime)
    .option('--json', 'print the run as JSON')
    .action(async (model: { name: string; ref?: string | number }, opts: { start: string; end: string; json?: boolean }) => {
      const report = await withKnex((knex) =>
        checkSkew({ features: new FeatureStore({ knex }), registry: new ModelRegistry({ knex }), monitoring: new MonitoringStore({ knex }) }, { model: model.name, ref: model.ref, start: opts.start, end: opts.end }),
      );
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatSkew(report));
      if (report.alerts.length) process.exitCode = 3;
    });
  monitor
    .command('list')
    .description('recorded drift runs, newest first')
    .option('--model <name>', 'only this model')
    .option('--json', 'print the runs as JSON')
    .action(async (opts: { model?: string; json?: boolean }) => {
      const runs = (await withKnex((knex) => new MonitoringStore({ knex }).driftRuns({ model: opts.model }))).map(withIsoTimes);
      if (opts.json) return console.log(JSON.stringify(runs, null, 2));
      console.log(
        runs.length === 0
          ? 'no drift run recorded yet'
          : table(
              ['RUN', 'MODEL', 'WINDOW', 'ROWS', 'ALERTS', 'AT'],
              runs.map((r) => [String(r.id), `${r.model} v${r.modelVersion}`, `${r.windowStart} … ${r.windowEnd}`, String(r.windowRows), r.alerts.join(', ') || '-', r.createdAt]),
            ),
      );
    });
}

/** A drift run as a table: one line per feature, alerts marked. */
export function formatDrift(r: DriftReport): string {
  const n = (x: number | null, digits = 3) => (x === null ? '-' : x.toFixed(digits));
  const head = `drift of ${r.model} v${r.modelVersion} (feature view ${r.featureView.name} v${r.featureView.version}): ${r.windowRows} rows of [${r.windowStart}, ${r.windowEnd}) against ${r.trainRows} train rows of dataset ${r.trainingDatasetId}`;
  const rows = r.features.map((f) => [f.feature, f.kind, `${n(f.psi)} / ${f.psiThreshold}`, f.ks === null ? '-' : `${n(f.ks)} / ${f.ksThreshold}`, `${n(f.trainNullShare * 100, 1)}% → ${n(f.windowNullShare * 100, 1)}%`, f.alert ? 'ALERT' : 'ok']);
  const tail = r.alerts.length ? `${r.alerts.length} alert(s): ${r.alerts.join(', ')}` : 'no alert';
  return [head, '', table(['FEATURE', 'KIND', 'PSI / MAX', 'KS / MAX', 'MISSING', ''], rows), '', tail, `(run ${r.id}; fti monitor list)`].join('\n');
}

/** A skew run as a table: one line per feature, mismatches marked. */
export function formatSkew(r: SkewReport): string {
  const head = `skew of ${r.model} v${r.modelVersion} (feature view ${r.featureView.name} v${r.featureView.version}): ${r.rows} logged predictions of [${r.windowStart}, ${r.windowEnd}) against their offline point-in-time features`;
  const rows = r.features.map((f) => [
    f.feature,
    f.kind,
    `${f.mismatches} / ${f.rows}`,
    `${(f.mismatchShare * 100).toFixed(2)}%`,
    f.maxAbsDiff === null ? '-' : String(Number(f.maxAbsDiff.toPrecision(6))),
    String(f.nullMismatches),
    f.mismatches ? 'SKEW' : 'ok',
  ]);
  const tail = r.rows === 0 ? 'nothing logged in the window (is fti serve running with --skew-log-rate above 0?)' : r.alerts.length ? `${r.alerts.length} feature(s) with mismatches: ${r.alerts.join(', ')}` : 'no mismatch';
  return [head, '', table(['FEATURE', 'KIND', 'MISMATCHES', 'SHARE', 'MAX |DIFF|', 'NULL MISMATCHES', ''], rows), '', tail, `(run ${r.id})`].join('\n');
}

function parseModel(value: string): { name: string; ref?: string | number } {
  const [name = '', ref] = value.split('@');
  if (!IDENTIFIER.test(name)) throw new InvalidArgumentError('expected NAME, NAME@ALIAS or NAME@VERSION');
  if (ref === undefined) return { name };
  if (/^[0-9]{1,9}$/.test(ref)) return { name, ref: Number(ref) };
  if (IDENTIFIER.test(ref)) return { name, ref };
  throw new InvalidArgumentError('expected NAME, NAME@ALIAS or NAME@VERSION');
}

function parseTime(value: string): string {
  if (Number.isNaN(Date.parse(value))) throw new InvalidArgumentError('expected an ISO 8601 time, e.g. 2001-06-01T00:00:00Z');
  return new Date(value).toISOString();
}
