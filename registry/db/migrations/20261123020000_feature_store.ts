import type { Knex } from 'knex';

/**
 * The feature store's catalog tables. Each feature group version also gets tables
 * of its own, created when it is registered (registry/feature-store/tables.ts):
 * an offline table partitioned by commit, a history of superseded rows, and an
 * online table when online-enabled.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('feature_groups', (t) => {
    t.increments('id');
    t.text('name').notNullable();
    t.integer('version').notNullable();
    t.text('fingerprint').notNullable();
    t.jsonb('schema').notNullable();
    t.boolean('online').notNullable();
    t.text('description');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['name', 'version']);
  });

  // One row per commit attempt; only status 'committed' is visible to readers.
  await knex.schema.createTable('feature_commits', (t) => {
    t.bigIncrements('id');
    t.integer('feature_group_id').notNullable().references('feature_groups.id');
    t.text('idempotency_key').notNullable();
    t.text('status').notNullable().checkIn(['staging', 'committed', 'failed']);
    t.text('workflow_id');
    t.text('run_id');
    t.timestamp('window_start', { useTz: true });
    t.timestamp('window_end', { useTz: true });
    t.bigInteger('rows_in').notNullable().defaultTo(0);
    t.bigInteger('rows_committed').notNullable().defaultTo(0);
    t.bigInteger('rows_inserted').notNullable().defaultTo(0);
    t.bigInteger('rows_updated').notNullable().defaultTo(0);
    t.bigInteger('rows_unchanged').notNullable().defaultTo(0);
    t.bigInteger('rows_rejected').notNullable().defaultTo(0);
    t.timestamp('min_event_time', { useTz: true });
    t.timestamp('max_event_time', { useTz: true });
    t.jsonb('source_commits').notNullable().defaultTo('[]');
    t.jsonb('validation_report');
    t.text('error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
    t.unique(['feature_group_id', 'idempotency_key']);
    t.index(['feature_group_id', 'status', 'id']);
  });

  // Rows that failed typing or expectations, with the reasons, kept per attempt.
  await knex.schema.createTable('feature_rejects', (t) => {
    t.bigInteger('commit_id').notNullable().references('feature_commits.id');
    t.bigInteger('row_number').notNullable();
    t.specificType('reasons', 'text[]').notNullable();
    t.jsonb('row').notNullable();
    t.primary(['commit_id', 'row_number']);
  });

  await knex.schema.createTable('feature_statistics', (t) => {
    t.bigInteger('commit_id').notNullable().references('feature_commits.id');
    t.text('feature').notNullable();
    t.text('type').notNullable();
    t.bigInteger('count').notNullable();
    t.bigInteger('nulls').notNullable();
    t.double('mean');
    t.double('std');
    t.double('min');
    t.double('max');
    t.bigInteger('distinct_count');
    t.jsonb('histogram');
    t.primary(['commit_id', 'feature']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('feature_statistics');
  await knex.schema.dropTable('feature_rejects');
  await knex.schema.dropTable('feature_commits');
  await knex.schema.dropTable('feature_groups');
}
