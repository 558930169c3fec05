/**
 * `npm run demo` (`fti demo`): the whole system on embedded defaults. Starts
 * Postgres, the Temporal dev server and both worker pools, runs ftiPipeline on the
 * flights example (features for Jan-Jun 2001, train on Jan-May, predict June) with
 * live progress, and ends with a summary. `--keep` leaves everything running to
 * explore the Temporal UI; `--json` makes the last line one JSON object.
 */
import type { Command } from 'commander';
import { FtiClient } from '../../client/fti-client.ts';
import { FLIGHTS_CHAIN } from '../../client/pipelines/all.ts';
import { loadConfig } from '../../core/config.ts';
import { createLogger } from '../../core/log.ts';
import { taskQueue } from '../../core/task-queues.ts';
import type { DriftReport } from '../../activities/monitoring.ts';
import type { FtiPipelineResult } from '../../workflows/fti-pipeline.ts';
import { progressQuery, type PipelineProgress } from '../../core/progress.ts';
import { startDevStack } from '../services/dev-stack.ts';
import { writeDemoReport } from './demo-report.ts';
import { waitForSignal } from './dev.ts';

export interface DemoSummary {
  workflowId: string;
  temporalUi: string | undefined;
  rows: Record<string, number>;
  versions: { commits: Record<string, number>; trainingDataset: number; model: string; modelVersion: number; predictionRun: string };
  testAuc: number | null;
  promoted: boolean | null;
  predictionsWritten: number;
  secondsPerStage: FtiPipelineResult['seconds'];
  /** June's features against the model's training data (the monitoringPipeline workflow). */
  drift: { run: number; features: number; alerts: string[]; largestPsi: { feature: string; psi: number } | null } | null;
  /** The model version's report (HTML), written under the data directory; null when it has none. */
  report: string | null;
  wallSeconds: number;
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the flights example end to end on embedded defaults (Postgres, Temporal, both workers) and print a summary')
    .option('--keep', 'leave the services running afterwards (explore the Temporal UI; Ctrl-C stops them)')
    .option('--json', 'print the summary as one JSON object on the last line')
    .action(async (opts: { keep?: boolean; json?: boolean }) => {
      const started = Date.now();
      const log = createLogger('demo', (l) => console.error(l));
      const config = loadConfig();
      // Worker output is noisy; keep only their own start-up lines (text here; JSON lines with FTI_LOG_FORMAT=json).
      const stack = await startDevStack(config, log, { workerLog: (line) => (/\[worker:(cpu|gpu)\]|"component":"worker:(cpu|gpu)"/.test(line) ? log(line) : undefined) });
      let failed = false;
      let summary: DemoSummary | undefined;
      try {
        const client = await FtiClient.connect({ temporalAddress: stack.temporalAddress, temporalNamespace: config.temporalNamespace, taskQueuePrefix: config.taskQueuePrefix });
        try {
          // A rerun: the demo computes the chain again even if an earlier demo ran it.
          const run = await client.start('all', FLIGHTS_CHAIN, { rerun: true });
          const ui = stack.uiUrl ? `${stack.uiUrl}/namespaces/${config.temporalNamespace}/workflows/${encodeURIComponent(run.workflowId)}` : undefined;
          log(`started ftiPipeline ${run.workflowId}${ui ? ` - watch it in the Temporal UI: ${ui}` : ''}`);
          const result = await followChain(run.workflowId, run.result(), log, client);
          // Then the drift of June (the month just predicted) against the model's training data.
          log('drift: June against the training data');
          const drift = await client.temporal.workflow.execute<(input: unknown) => Promise<DriftReport>>('monitoringPipeline', {
            taskQueue: taskQueue('cpu', config.taskQueuePrefix),
            workflowId: `${run.workflowId}/drift`,
            args: [{ model: result.lineage.modelVersion.model, ref: result.lineage.modelVersion.version, start: FLIGHTS_CHAIN.inference.start, end: FLIGHTS_CHAIN.inference.end }],
          });
          const report = await writeDemoReport(config, stack.databaseUrl, result.lineage.modelVersion.model, result.lineage.modelVersion.version);
          summary = summarize(run.workflowId, ui, result, drift, report, started);
        } finally {
          await client.close();
        }
      } catch (err) {
        failed = true;
        console.error(`demo failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      if (opts.keep) {
        if (summary) printSummary(summary, { human: true, json: false });
        log(`services are still running${stack.uiUrl ? `; Temporal UI: ${stack.uiUrl}` : ''}; Ctrl-C to stop`);
        await waitForSignal();
      }
      await stack.stop();
      // Printed last, after the services' shutdown lines: with --json the last line is the summary.
      if (summary) printSummary(summary, { human: !opts.keep, json: opts.json === true });
      if (failed) process.exitCode = 1;
    });
}

/** Prints a line whenever the chain's stage or its current child's progress changes. */
async function followChain(workflowId: string, done: Promise<FtiPipelineResult>, log: (line: string) => void, client: FtiClient): Promise<FtiPipelineResult> {
  const temporal = client.temporal;
  let last = '';
  let finished = false;
  const result = done.finally(() => {
    finished = true;
  });
  while (!finished) {
    await Promise.race([result.catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    if (finished) break;
    try {
      const parent = await temporal.workflow.getHandle(workflowId).query(progressQuery);
      const child = typeof parent.details?.child === 'string' ? parent.details.child : undefined;
      const inner = child ? await temporal.workflow.getHandle(child).query(progressQuery).catch(() => undefined) : undefined;
      const line = `${parent.stage} (${parent.done}/${parent.total})${inner ? ` - ${child?.split('/').pop()}: ${describe(inner)}` : ''}`;
      if (line !== last) log(line);
      last = line;
    } catch {
      // The run may not be picked up yet; keep waiting.
    }
  }
  return result;
}

function describe(p: PipelineProgress): string {
  const d = p.details ?? {};
  const parts = [`${p.stage} ${p.done}/${p.total}`];
  if (typeof d.epoch === 'number') parts.push(`${d.unit === 'round' ? 'round' : 'epoch'} ${d.epoch}/${String(d.epochs)} loss ${Number(d.loss).toFixed(4)}${typeof d.valLoss === 'number' ? ` val ${d.valLoss.toFixed(4)}` : ''}`);
  if (typeof d.rows === 'number') parts.push(`${d.rows} rows`);
  return parts.join(', ');
}

function summarize(workflowId: string, ui: string | undefined, r: FtiPipelineResult, drift: DriftReport, report: string | null, started: number): DemoSummary {
  const largest = [...drift.features].sort((a, b) => b.psi - a.psi)[0];
  return {
    workflowId,
    temporalUi: ui,
    rows: Object.fromEntries(r.commits.map((c) => [c.featureGroup, c.rowsCommitted])),
    versions: {
      commits: Object.fromEntries(r.commits.map((c) => [c.featureGroup, c.commitId])),
      trainingDataset: r.lineage.trainingDataset,
      model: r.lineage.modelVersion.model,
      modelVersion: r.lineage.modelVersion.version,
      predictionRun: r.lineage.predictionRun,
    },
    testAuc: r.training.metrics.auc ?? null,
    promoted: r.training.promotion?.promoted ?? null,
    predictionsWritten: r.predictions.rows,
    secondsPerStage: r.seconds,
    drift: { run: drift.id, features: drift.features.length, alerts: drift.alerts, largestPsi: largest ? { feature: largest.feature, psi: Math.round(largest.psi * 1000) / 1000 } : null },
    report,
    wallSeconds: Math.round((Date.now() - started) / 100) / 10,
  };
}

function printSummary(s: DemoSummary, show: { human: boolean; json: boolean }): void {
  const lines = [
    '',
    'FTI demo: the flights example, end to end',
    `  features     ${Object.entries(s.rows).map(([g, n]) => `${g}: ${n.toLocaleString('en-US')} rows (commit ${s.versions.commits[g]})`).join('; ')}`,
    `  training     dataset ${s.versions.trainingDataset} -> ${s.versions.model} v${s.versions.modelVersion}, test AUC ${s.testAuc?.toFixed(4) ?? 'n/a'}${s.promoted === null ? '' : s.promoted ? ', promoted to champion' : ', not promoted'}`,
    `  inference    prediction run ${s.versions.predictionRun}: ${s.predictionsWritten.toLocaleString('en-US')} predictions written`,
    ...(s.drift
      ? [
          `  drift        June against the training data: ${s.drift.alerts.length ? `${s.drift.alerts.length} of ${s.drift.features} features over their thresholds (${s.drift.alerts.join(', ')})` : `no feature of ${s.drift.features} over its threshold`}` +
            `${s.drift.largestPsi ? `; largest PSI ${s.drift.largestPsi.psi} (${s.drift.largestPsi.feature})` : ''}; fti monitor list`,
        ]
      : []),
    `  wall time    features ${s.secondsPerStage.features.toFixed(1)} s, training ${s.secondsPerStage.training.toFixed(1)} s, inference ${s.secondsPerStage.inference.toFixed(1)} s (from the version's registration, beside the end of training); demo ${s.wallSeconds} s in all (services included)`,
    ...(s.temporalUi ? [`  Temporal UI  ${s.temporalUi}`] : []),
    ...(s.report ? [`  report       ${s.report} (${s.versions.model} v${s.versions.modelVersion}: fti models report ${s.versions.model}@${s.versions.modelVersion}, or GET /models/${s.versions.model}/${s.versions.modelVersion}/report on fti serve)`] : []),
    '',
  ];
  if (show.human) console.log(lines.join('\n'));
  if (show.json) console.log(JSON.stringify(s));
}
