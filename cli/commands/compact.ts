/**
 * `fti compact [group]`: compacts offline partitions written to since their last
 * compaction (registry/feature-store/compaction.ts), here and now, as the worker role.
 * The `compaction` workflow does the same on a worker (for a Temporal Schedule).
 */
import { InvalidArgumentError, type Command } from 'commander';
import { compactGroups, type CompactionReport } from '../../activities/compaction.ts';
import { FeatureStore, UNCHANGED_SINCE_COMPACTION as UNCHANGED } from '../../registry/feature-store/index.ts';
import { withKnex } from '../db.ts';
import { table } from '../format.ts';

interface CompactOptions {
  version?: number;
  includeOpen?: boolean;
  json?: boolean;
}

export function registerCompactCommand(program: Command): void {
  program
    .command('compact')
    .description('rewrite the offline partitions commits wrote to since their last compaction in key order (every snapshot unchanged)')
    .argument('[featureGroup]', 'one feature group (default: all)')
    .option('--version <n>', 'the group version (default: the latest)', parseVersion)
    .option('--include-open', "compact each group's newest range too (the one commits still write to)")
    .option('--json', 'print the report as JSON')
    .action(async (featureGroup: string | undefined, opts: CompactOptions) => {
      if (opts.version !== undefined && !featureGroup) throw new InvalidArgumentError('--version needs a feature group');
      const report = await withKnex((knex) => compactGroups(new FeatureStore({ knex }), { featureGroup, version: opts.version, includeOpen: opts.includeOpen }));
      console.log(opts.json ? JSON.stringify(report, null, 2) : formatReport(report));
    });
}

function parseVersion(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a version number (1, 2, …)');
  return n;
}

function formatReport(r: CompactionReport): string {
  const out = [`compacted ${r.counts.partitionsCompacted} partition(s), ${r.counts.rowsRewritten} rows rewritten; ${r.counts.partitionsSkipped} left as they were`];
  const rows = r.groups.flatMap((g) => g.compacted.map((p) => [`${g.featureGroup} v${g.version}`, p.partition, p.rangeStart.slice(0, 10), String(p.commits), String(p.rows), `${p.ms} ms`]));
  if (rows.length) out.push('', table(['GROUP', 'PARTITION', 'RANGE FROM', 'COMMITS SINCE', 'ROWS', 'TIME'], rows));
  // Partitions nothing wrote to since are the usual case: counted above, not listed.
  for (const g of r.groups) for (const s of g.skipped.filter((x) => x.reason !== UNCHANGED)) out.push(`left ${s.partition} (${g.featureGroup} v${g.version}): ${s.reason}`);
  return out.join('\n');
}
