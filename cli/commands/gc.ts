/**
 * `fti gc`: reap leftovers older than the retention (activities/gc.ts says which),
 * here and now, as the worker role, asking Temporal what still runs. The `gc`
 * workflow does the same on a worker (for a Temporal Schedule). Human-readable by
 * default; `--json` prints the report as one JSON document.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { collectGarbage, temporalWorkflowState, type GcReport } from '../../activities/gc.ts';
import { isRetention, loadConfig, type Retention } from '../../core/config.ts';
import { taskQueue } from '../../core/task-queues.ts';
import { FeatureStore } from '../../registry/feature-store/index.ts';
import { TrainingStore } from '../../registry/training/index.ts';
import { withKnex } from '../db.ts';
import { table, time } from '../format.ts';
import { withFtiClient } from './run.ts';

interface GcOptions {
  retention?: Retention;
  dryRun?: boolean;
  json?: boolean;
}

export function registerGcCommand(program: Command): void {
  program
    .command('gc')
    .description('reap leftovers older than the retention: staging commits of terminated feature runs, training datasets no model version uses, scratch tables of dead dataset builds')
    .option('--retention <duration>', 'how old a leftover must be, e.g. 12h or 7d; 0: whatever is no longer in use (default: FTI_GC_RETENTION, else 7d)', parseRetention)
    .option('--dry-run', 'list what would be reaped; change nothing')
    .option('--json', 'print the report as JSON')
    .action(async (opts: GcOptions) => {
      const config = loadConfig();
      const retention = opts.retention ?? config.gcRetention;
      const report = await withFtiClient((fti) =>
        withKnex(
          (knex) =>
            collectGarbage(
              { features: new FeatureStore({ knex }), training: new TrainingStore({ knex }), workflows: temporalWorkflowState(fti.temporal, taskQueue('cpu', fti.taskQueuePrefix)) },
              { retention, dryRun: opts.dryRun },
            ),
          config,
        ),
      );
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatReport(report));
    });
}

function parseRetention(value: string): Retention {
  if (!isRetention(value)) throw new InvalidArgumentError('expected a duration such as 12h or 7d, or 0');
  return value;
}

function formatReport(r: GcReport): string {
  const verb = r.dryRun ? 'would reap' : 'reaped';
  const out: string[] = [`${r.dryRun ? 'dry run, nothing changed' : 'gc'}: retention ${r.retention}`];
  const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

  out.push('', `${verb} ${plural(r.counts.commitsReaped, 'staging commit')}`);
  if (r.commits.reaped.length) {
    out.push(table(['COMMIT', 'GROUP', 'TABLE', 'STAGED SINCE', 'WORKFLOW'], r.commits.reaped.map((c) => [String(c.commitId), `${c.featureGroup} v${c.version}`, c.tableExisted ? c.table : `${c.table} (none)`, time(new Date(c.createdAt)), c.workflowId ?? '-'])));
  }
  for (const c of r.commits.kept) out.push(`kept commit ${c.commitId} (${c.featureGroup} v${c.version}): ${c.reason}`);

  out.push('', `${verb} ${plural(r.counts.datasetsReaped, 'training dataset')}`);
  if (r.datasets.reaped.length) {
    out.push(table(['DATASET', 'VIEW', 'STATUS', 'TABLE', 'MADE'], r.datasets.reaped.map((d) => [String(d.trainingDatasetId), `${d.featureView.name} v${d.featureView.version}`, d.status, d.tableExisted ? d.table : `${d.table} (none)`, time(new Date(d.createdAt))])));
  }
  for (const d of r.datasets.kept) out.push(`kept dataset ${d.trainingDatasetId} (${d.featureView.name} v${d.featureView.version}): ${d.reason}`);

  out.push('', `${verb} ${plural(r.counts.joiningTables, 'dataset scratch table')}${r.datasets.joiningTables.length ? `: ${r.datasets.joiningTables.join(', ')}` : ''}`);
  if (r.datasets.joiningNoticed.length) out.push(`noticed ${plural(r.datasets.joiningNoticed.length, 'scratch table')} for the first time (a gc after the retention drops them): ${r.datasets.joiningNoticed.join(', ')}`);
  if (r.datasets.joiningKept) out.push(`td_joining_* tables left alone: ${r.datasets.joiningKept}`);
  return out.join('\n');
}
