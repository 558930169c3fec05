import type { Knex } from 'knex';

/**
 * Feature views, training datasets (each materialized as a table of its own,
 * td_<id>, created by the training pipeline) and training checkpoints.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('feature_views', (t) => {
    t.increments('id');
    t.text('name').notNullable();
    t.integer('version').notNullable();
    t.text('fingerprint').notNullable();
    t.jsonb('definition').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['name', 'version']);
  });

  await knex.schema.createTable('training_datasets', (t) => {
    t.bigIncrements('id');
    t.integer('feature_view_id').notNullable().references('feature_views.id');
    t.text('idempotency_key').notNullable().unique();
    t.text('status').notNullable().checkIn(['creating', 'ready', 'failed']);
    t.text('table_name');
    t.timestamp('window_start', { useTz: true });
    t.timestamp('window_end', { useTz: true });
    // Split boundaries: train [start, validation_start), validation [.., test_start), test [.., end).
    t.timestamp('validation_start', { useTz: true });
    t.timestamp('test_start', { useTz: true });
    t.jsonb('row_counts').notNullable().defaultTo('{}');
    // Per feature, over the train split: numeric { count, mean, std } or { categories }.
    t.jsonb('statistics').notNullable().defaultTo('{}');
    t.text('workflow_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
  });

  // The feature group commits a dataset read: its snapshot, and a lineage query's answer.
  await knex.schema.createTable('training_dataset_commits', (t) => {
    t.bigInteger('training_dataset_id').notNullable().references('training_datasets.id');
    t.text('feature_group').notNullable();
    t.integer('feature_group_version').notNullable();
    t.bigInteger('commit_id').notNullable();
    t.primary(['training_dataset_id', 'feature_group', 'feature_group_version']);
    t.index(['feature_group', 'feature_group_version', 'commit_id']);
  });

  // The latest checkpoint of a training run (one row per run, overwritten each epoch).
  await knex.schema.createTable('training_checkpoints', (t) => {
    t.text('run_key').primary();
    t.integer('epoch').notNullable();
    t.binary('checkpoint').notNullable();
    t.jsonb('history').notNullable().defaultTo('[]');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('alter table training_checkpoints alter column checkpoint set storage external');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('training_checkpoints');
  await knex.schema.dropTable('training_dataset_commits');
  await knex.schema.dropTable('training_datasets');
  await knex.schema.dropTable('feature_views');
}
