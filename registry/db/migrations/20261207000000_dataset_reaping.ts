import type { Knex } from 'knex';

/**
 * Training datasets that `fti gc` reaped: status 'reaped' (the row stays, with its
 * lineage, so reading it says what happened) and when.
 */
export async function up(knex: Knex): Promise<void> {
  await dropStatusChecks(knex);
  await knex.raw(`alter table training_datasets add constraint training_datasets_status_check check (status in ('creating', 'ready', 'failed', 'reaped'))`);
  await knex.schema.alterTable('training_datasets', (t) => {
    t.timestamp('reaped_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  // A reaped dataset has no table: 'failed' is the nearest status the older schema knows.
  await knex('training_datasets').where({ status: 'reaped' }).update({ status: 'failed' });
  await knex.schema.alterTable('training_datasets', (t) => {
    t.dropColumn('reaped_at');
  });
  await dropStatusChecks(knex);
  await knex.raw(`alter table training_datasets add constraint training_datasets_status_check check (status in ('creating', 'ready', 'failed'))`);
}

/** The status check, whatever Postgres named the one 20261123030000_training declared inline. */
async function dropStatusChecks(knex: Knex): Promise<void> {
  const checks = (await knex.raw(
    `select conname from pg_constraint where conrelid = 'training_datasets'::regclass and contype = 'c' and pg_get_constraintdef(oid) like '%status%'`,
  )) as { rows: Array<{ conname: string }> };
  for (const { conname } of checks.rows) await knex.raw('alter table training_datasets drop constraint ??', [conname]);
}
