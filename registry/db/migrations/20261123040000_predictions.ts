import type { Knex } from 'knex';

/**
 * Prediction runs (batch inference) and their predictions.
 *
 *   prediction_runs             one row per run id: the pinned model version, the
 *                               feature view, the window, status and row counts
 *   prediction_run_commits      the feature group commits the run read (lineage)
 *   prediction_run_partitions   the run's time slices: the unit of retry and progress
 *   predictions                 one row per scored spine row (entity keys + event time)
 *   prediction_rejects          spine rows whose features failed the model signature
 *
 * A partition's predictions are written in one transaction (under a lock on the
 * partition: delete whatever its time range holds, COPY, mark it done), so a retry or
 * a re-run of the run id never adds a second row for a spine row.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('prediction_runs', (t) => {
    t.text('run_id').primary();
    t.text('model').notNullable();
    // What the caller asked for ('champion', '3'), and the version it resolved to once.
    t.text('requested_ref').notNullable();
    t.integer('model_version').notNullable();
    t.text('feature_view').notNullable();
    t.integer('feature_view_version').notNullable();
    t.timestamp('window_start', { useTz: true }).notNullable();
    t.timestamp('window_end', { useTz: true }).notNullable();
    t.text('strategy').notNullable().checkIn(['window', 'lateral']);
    t.text('status').notNullable().checkIn(['running', 'completed', 'failed']);
    t.bigInteger('spine_rows').notNullable().defaultTo(0);
    t.bigInteger('rows').notNullable().defaultTo(0);
    t.bigInteger('rows_rejected').notNullable().defaultTo(0);
    t.text('workflow_id');
    t.text('workflow_run_id');
    t.text('error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('finished_at', { useTz: true });
    t.index(['model', 'model_version']);
  });

  await knex.schema.createTable('prediction_run_commits', (t) => {
    t.text('run_id').notNullable().references('prediction_runs.run_id').onDelete('CASCADE');
    t.text('feature_group').notNullable();
    t.integer('feature_group_version').notNullable();
    t.bigInteger('commit_id').notNullable();
    t.primary(['run_id', 'feature_group', 'feature_group_version']);
    t.index(['feature_group', 'feature_group_version', 'commit_id']);
  });

  await knex.schema.createTable('prediction_run_partitions', (t) => {
    t.text('run_id').notNullable().references('prediction_runs.run_id').onDelete('CASCADE');
    t.integer('partition').notNullable();
    t.timestamp('window_start', { useTz: true }).notNullable();
    t.timestamp('window_end', { useTz: true }).notNullable();
    t.bigInteger('spine_rows').notNullable().defaultTo(0);
    t.text('status').notNullable().checkIn(['pending', 'done']);
    t.bigInteger('rows').notNullable().defaultTo(0);
    t.bigInteger('rows_rejected').notNullable().defaultTo(0);
    t.timestamp('finished_at', { useTz: true });
    t.primary(['run_id', 'partition']);
  });

  // Written by COPY, hundreds of thousands of rows per run: no primary key or btree
  // (each would double the cost of the COPY) and no foreign key (a per-row check).
  // Rows of a run are appended together, so a BRIN index finds a run's rows (and a
  // partition's time range) at almost no cost to the writes.
  await knex.schema.createTable('predictions', (t) => {
    t.text('run_id').notNullable();
    t.text('model').notNullable();
    t.integer('model_version').notNullable();
    t.jsonb('entity_key').notNullable();
    t.timestamp('event_time', { useTz: true }).notNullable();
    t.double('score').notNullable();
  });
  await knex.raw('create index predictions_run_brin on predictions using brin (run_id, event_time)');

  await knex.schema.createTable('prediction_rejects', (t) => {
    t.text('run_id').notNullable();
    t.jsonb('entity_key').notNullable();
    t.timestamp('event_time', { useTz: true }).notNullable();
    t.specificType('reasons', 'text[]').notNullable();
    t.jsonb('features').notNullable();
    t.primary(['run_id', 'event_time', 'entity_key']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('prediction_rejects');
  await knex.schema.dropTable('predictions');
  await knex.schema.dropTable('prediction_run_partitions');
  await knex.schema.dropTable('prediction_run_commits');
  await knex.schema.dropTable('prediction_runs');
}
