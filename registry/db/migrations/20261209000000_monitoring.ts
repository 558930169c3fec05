import type { Knex } from 'knex';

/**
 * Monitoring runs (registry/monitoring): each compares the features of a window with
 * the training dataset of the model version in use, and keeps one row per feature.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('monitoring_runs', (t) => {
    t.bigIncrements('id');
    t.text('model').notNullable();
    t.integer('model_version').notNullable();
    t.bigInteger('training_dataset_id').notNullable();
    t.text('feature_view').notNullable();
    t.integer('feature_view_version').notNullable();
    t.timestamp('window_start', { useTz: true }).notNullable();
    t.timestamp('window_end', { useTz: true }).notNullable();
    t.bigInteger('train_rows').notNullable();
    t.bigInteger('window_rows').notNullable();
    t.integer('alerts').notNullable();
    t.text('workflow_id');
    // A retried activity finds its run instead of adding another.
    t.text('idempotency_key').unique();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.index(['model', 'created_at']);
  });
  await knex.schema.createTable('feature_drift', (t) => {
    t.bigInteger('monitoring_run_id').notNullable().references('monitoring_runs.id').onDelete('cascade');
    t.text('feature').notNullable();
    t.text('kind').notNullable().checkIn(['numeric', 'categorical']);
    t.double('psi').notNullable();
    t.double('ks');
    t.double('psi_threshold').notNullable();
    t.double('ks_threshold');
    t.boolean('alert').notNullable();
    t.bigInteger('train_count').notNullable();
    t.bigInteger('window_count').notNullable();
    t.double('train_null_share').notNullable();
    t.double('window_null_share').notNullable();
    t.primary(['monitoring_run_id', 'feature']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('feature_drift');
  await knex.schema.dropTable('monitoring_runs');
}
