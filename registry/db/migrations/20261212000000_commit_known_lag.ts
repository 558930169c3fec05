import type { Knex } from 'knex';

/**
 * Per commit, the longest a stored row took to become known: max(_available_at − event
 * time) in milliseconds, over the rows the commit stored (0 when it stored none). A
 * point-in-time read of [start, end) then knows that every row of a snapshot with an
 * event time before start − (the largest of its commits') was known before start, so it
 * reads those partitions only for each key's newest row instead of scanning them.
 * Commits made before this column existed have null: unknown, no bound (read whole).
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('feature_commits', (t) => {
    t.bigInteger('max_known_lag_ms');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('feature_commits', (t) => {
    t.dropColumn('max_known_lag_ms');
  });
}
