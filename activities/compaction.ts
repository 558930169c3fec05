/**
 * Compaction of offline partitions (registry/feature-store/compaction.ts says what it
 * does), as an activity the `compaction` workflow runs on the CPU pool, and as
 * `compactGroups`, shared with `fti compact`.
 */
import { Context } from '@temporalio/activity';
import type { CompactedPartition, CompactionResult, FeatureStore } from '../registry/feature-store/index.ts';
import { withDomainFailures } from './failures.ts';

export interface CompactionInput {
  /** One group (default: every registered group). */
  featureGroup?: string;
  /** Its version (default: the latest). */
  version?: number;
  /** Compact each group's newest range too. */
  includeOpen?: boolean;
}

export interface CompactionReport {
  groups: CompactionResult[];
  counts: { partitionsCompacted: number; partitionsSkipped: number; rowsRewritten: number };
}

/** Compacts the named group, or every registered group (each version). */
export async function compactGroups(features: FeatureStore, input: CompactionInput, onCompacted?: (p: CompactedPartition & { featureGroup: string }) => void): Promise<CompactionReport> {
  const groups = input.featureGroup ? [await features.group(input.featureGroup, input.version)] : await features.groups();
  const results: CompactionResult[] = [];
  for (const group of groups) {
    results.push(await features.compact(group, { includeOpen: input.includeOpen, onCompacted: (p) => onCompacted?.({ ...p, featureGroup: group.name }) }));
  }
  const compacted = results.flatMap((r) => r.compacted);
  return {
    groups: results,
    counts: { partitionsCompacted: compacted.length, partitionsSkipped: results.reduce((n, r) => n + r.skipped.length, 0), rowsRewritten: compacted.reduce((n, p) => n + p.rows, 0) },
  };
}

export function createCompactionActivities({ features }: { features: FeatureStore }) {
  return withDomainFailures({
    /** Idempotent: a retry finds the partitions already compacted unchanged since, and skips them. */
    async compactFeatureGroups(input: CompactionInput = {}): Promise<CompactionReport> {
      const context = Context.current();
      const report = await compactGroups(features, input, (p) => context.heartbeat({ featureGroup: p.featureGroup, partition: p.partition }));
      context.log.info('compaction', report.counts);
      return report;
    },
  });
}
