/** `featurePipeline`: raw data -> a versioned commit of a feature group, per event-time window. */
import path from 'node:path';
import { parseWorkflowInput } from '../../core/errors.ts';
import { FeaturePipelineInputSchema, type FileSourceSpec } from '../../core/inputs.ts';
import type { FeaturePipelineInput } from '../../workflows/feature-pipeline.ts';
import { compact, fingerprint, positiveInt, text, windowKey, type PipelineSpec } from '../pipeline-spec.ts';

export const featureSpec: PipelineSpec<'feature'> = {
  name: 'feature',
  workflowType: 'featurePipeline',
  pool: 'cpu',
  description: 'raw data -> a validated, versioned commit of a feature group',
  idStem: (input) => `features:${input.featureGroup}:${input.version === undefined ? 'latest' : `v${input.version}`}`,
  runKey(input) {
    const window = windowKey(input);
    if (!window) return undefined;
    // Another source for the same window is another run.
    const source = fingerprint({ source: input.source });
    return `${featureSpec.idStem(input)}:${window}${source ? `:source-${source}` : ''}`;
  },
  validate(input) {
    const parsed = parseWorkflowInput('featurePipeline', FeaturePipelineInputSchema, input);
    return parsed.ok ? undefined : parsed.problem;
  },
  withScheduleWindow: ({ start: _start, end: _end, ...input }, window) => ({ ...input, scheduleWindow: window }),
  // Hourly windows that tile time. BUFFER_ALL: every fire is a distinct window, so none
  // may be dropped, and the runs of a group stay sequential and in window order.
  // Backfills ALLOW_ALL: their windows are disjoint and a run is idempotent per window.
  schedule: { every: '1h', window: '1h', windowFollowsInterval: true, overlap: 'BUFFER_ALL', backfillOverlap: 'ALLOW_ALL', catchupWindow: '1d' },
  flags: [
    { flags: '--group <name>', description: 'feature group to compute', required: true },
    { flags: '--version <n>', description: 'feature group version (default: the latest defined)' },
    { flags: '--start <iso>', description: 'event-time window start (inclusive), e.g. 2001-01-03T00:00:00Z', runOnly: true },
    { flags: '--end <iso>', description: 'event-time window end (exclusive)', runOnly: true },
    {
      flags: '--source-file <path>',
      description: "read this Parquet, CSV or NDJSON file instead of the definition's source (late rows, a correction); the workers open it, and only under their data roots (FTI_DATA_ROOTS)",
    },
  ],
  fromFlags: (values): FeaturePipelineInput =>
    compact({
      featureGroup: text(values.group) ?? '',
      version: positiveInt(values.version, '--version'),
      start: text(values.start),
      end: text(values.end),
      source: text(values.sourceFile) === undefined ? undefined : sourceFromFile(text(values.sourceFile) ?? ''),
    }),
  summarize: (r) =>
    `${r.featureGroup} v${r.version} commit ${r.commitId}: ${r.rowsCommitted} rows committed ` +
    `(${r.rowsInserted} inserted, ${r.rowsUpdated} updated, ${r.rowsUnchanged} unchanged), ${r.rowsRejected} rejected of ${r.rowsIn} read`,
};

/** A local file as a source; the kind follows the extension. The worker checks the path against its data roots. */
export function sourceFromFile(file: string): FileSourceSpec {
  const absolute = path.resolve(file);
  const ext = path.extname(absolute).toLowerCase();
  if (ext === '.parquet') return { kind: 'parquet', path: absolute };
  if (ext === '.csv') return { kind: 'csv', path: absolute };
  if (ext === '.ndjson' || ext === '.jsonl') return { kind: 'ndjson', path: absolute };
  throw new Error(`--source-file ${file}: expected a .parquet, .csv, .ndjson or .jsonl file`);
}
