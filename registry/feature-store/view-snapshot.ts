/**
 * A feature view's snapshot: its groups with the commit each is read as of. Training
 * datasets and prediction runs pin one (the latest commits when they start), and
 * every read of theirs goes through `viewQuery`, so both join the same way.
 */
import type { Knex } from 'knex';
import { FailureType, FtiError } from '../../core/errors.ts';
import { durationMs } from '../../core/duration.ts';
import type { FeatureGroupCommitRef } from '../../core/refs.ts';
import type { FeatureViewDefinition } from '../../features/views.ts';
import { latestCommit, snapshotPin, type SnapshotPin } from './commits.ts';
import { getFeatureGroup, type FeatureGroupRecord } from './groups.ts';
import type { PitQuery } from './point-in-time.ts';
import { upgradeGroupTables } from './tables.ts';

export interface ViewSnapshot {
  spine: FeatureGroupRecord;
  joins: FeatureGroupRecord[];
  /** The pinned commit of each group (what lineage records). */
  commits: FeatureGroupCommitRef[];
  /** Each group's snapshot as its pinned commit defines it, by `name@version`. */
  visible: ReadonlyMap<string, SnapshotPin>;
}

const groupKey = (g: { name: string; version: number }) => `${g.name}@${g.version}`;

async function viewGroups(knex: Knex, view: FeatureViewDefinition): Promise<FeatureGroupRecord[]> {
  const groups = [{ group: view.spine.group, version: view.spine.version }, ...view.joins];
  return Promise.all(groups.map((g) => getFeatureGroup(knex, g.group, g.version)));
}

async function toSnapshot(knex: Knex, records: FeatureGroupRecord[], commits: FeatureGroupCommitRef[]): Promise<ViewSnapshot> {
  const [spine, ...joins] = records as [FeatureGroupRecord, ...FeatureGroupRecord[]];
  for (const record of records) await upgradeGroupTables(knex, record);
  const visible = new Map<string, SnapshotPin>();
  for (const c of commits) visible.set(`${c.featureGroup}@${c.version}`, await snapshotPin(knex, c.commitId));
  return { spine, joins, commits, visible };
}

/** The view's groups with their latest commits, resolved now: what a new dataset or run pins. */
export async function latestViewSnapshot(knex: Knex, view: FeatureViewDefinition): Promise<ViewSnapshot> {
  const records = await viewGroups(knex, view);
  const commits: FeatureGroupCommitRef[] = [];
  for (const record of records) {
    const commit = await latestCommit(knex, record.id);
    if (!commit) throw new FtiError(FailureType.NotFound, `feature group ${record.name} v${record.version} has no commit yet: run its feature pipeline first`);
    commits.push({ featureGroup: record.name, version: record.version, commitId: commit.id });
  }
  return toSnapshot(knex, records, commits);
}

/** The view's groups as of commits pinned earlier (on a prediction run); each group must have one. */
export async function pinnedViewSnapshot(knex: Knex, view: FeatureViewDefinition, commits: FeatureGroupCommitRef[]): Promise<ViewSnapshot> {
  const records = await viewGroups(knex, view);
  for (const r of records) {
    if (!commits.some((c) => c.featureGroup === r.name && c.version === r.version)) {
      throw new FtiError(FailureType.Conflict, `no commit of ${r.name} v${r.version} is pinned for this run`);
    }
  }
  return toSnapshot(knex, records, commits);
}

/** The point-in-time query of a view over a snapshot (as of its commits). */
export function viewQuery(view: FeatureViewDefinition, snapshot: ViewSnapshot, options: { start?: Date; end?: Date; withLabel: boolean; strategy: PitQuery['strategy'] }): PitQuery {
  const visibleOf = (g: FeatureGroupRecord): SnapshotPin => {
    const pin = snapshot.visible.get(groupKey(g));
    if (!pin) throw new FtiError(FailureType.Conflict, `no commit of ${g.name} v${g.version} is pinned in this snapshot`);
    return pin;
  };
  return {
    spine: { shape: snapshot.spine, visible: visibleOf(snapshot.spine) },
    label: options.withLabel ? view.label.name : undefined,
    spineFeatures: view.features.filter((f) => f.group === view.spine.group).map((f) => ({ column: f.feature, as: f.name })),
    joins: view.joins.map((j, i) => {
      const shape = snapshot.joins[i] as FeatureGroupRecord;
      return { shape, visible: visibleOf(shape), on: j.on, ...(j.ttl ? { ttlMs: durationMs(j.ttl) } : {}), features: view.features.filter((f) => f.group === j.group).map((f) => ({ column: f.feature, as: f.name })) };
    }),
    start: options.start,
    end: options.end,
    strategy: options.strategy,
    pointInTime: view.pointInTime ?? 'available_at',
  };
}
