import type { Knex } from 'knex';

/**
 * Commit order is visibility order: a commit gets its sequence number when it
 * becomes visible (under its group's lock), not when its run was planned. Snapshots
 * ("as of commit N") read the commits visible up to N's number, so backfills and
 * reruns that commit out of id order leave every pinned snapshot as it was.
 * Existing commits are numbered in the order they finished.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.raw('create sequence feature_commit_visible_seq');
  await knex.schema.alterTable('feature_commits', (t) => {
    t.bigInteger('visible_seq').unique();
    t.timestamp('visible_at', { useTz: true });
    t.text('code_version');
  });
  await knex.raw(`
    update feature_commits c set visible_seq = o.seq, visible_at = c.finished_at
    from (select id, row_number() over (order by finished_at, id) as seq from feature_commits where status = 'committed') o
    where c.id = o.id`);
  await knex.raw(`select setval('feature_commit_visible_seq', greatest((select max(visible_seq) from feature_commits), 0) + 1, false)`);
  await knex.raw(`alter table feature_commits add constraint feature_commits_visible check ((status = 'committed') = (visible_seq is not null))`);
  await knex.schema.alterTable('feature_commits', (t) => {
    t.index(['feature_group_id', 'visible_seq']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('feature_commits', (t) => {
    t.dropIndex(['feature_group_id', 'visible_seq']);
  });
  await knex.raw('alter table feature_commits drop constraint feature_commits_visible');
  await knex.schema.alterTable('feature_commits', (t) => {
    t.dropColumn('visible_seq');
    t.dropColumn('visible_at');
    t.dropColumn('code_version');
  });
  await knex.raw('drop sequence feature_commit_visible_seq');
}
