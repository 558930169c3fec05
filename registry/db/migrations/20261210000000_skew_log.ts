import type { Knex } from 'knex';

/**
 * Training/serving skew (registry/monitoring):
 *
 *   skew_log       what the prediction server served, sampled: the model version, the
 *                  view it built the vector from, the entity's keys, the request time,
 *                  the feature vector (raw values by view feature name) and the score.
 *                  Written by the serving role, which may INSERT here and nothing else
 *                  (it reads the registry and the online tables only); the worker role
 *                  reads it for skew checks (default privileges of 20261130000000).
 *   feature_skew   per skew check and feature: the logged vectors compared with the
 *                  offline point-in-time vectors of the same (entity, request time).
 *
 * A skew check is a monitoring run of kind 'skew': monitoring_runs gains `kind`, and
 * the columns only drift has (the training dataset it compares with) become optional.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('skew_log', (t) => {
    t.bigIncrements('id');
    t.text('model').notNullable();
    t.integer('model_version').notNullable();
    t.text('feature_view').notNullable();
    t.integer('feature_view_version').notNullable();
    t.jsonb('entity_keys').notNullable();
    // The instant the online lookup read the features as of (windowed groups are evaluated at it).
    t.timestamp('served_at', { useTz: true }).notNullable();
    t.jsonb('features').notNullable();
    t.double('prediction');
    // A check reads one model version's rows of a time window.
    t.index(['model', 'model_version', 'served_at']);
  });
  await knex.schema.alterTable('monitoring_runs', (t) => {
    t.text('kind').notNullable().defaultTo('drift').checkIn(['drift', 'skew']);
    t.bigInteger('training_dataset_id').nullable().alter();
    t.bigInteger('train_rows').nullable().alter();
  });
  await knex.schema.createTable('feature_skew', (t) => {
    t.bigInteger('monitoring_run_id').notNullable().references('monitoring_runs.id').onDelete('cascade');
    t.text('feature').notNullable();
    // The feature's place in the view: runs read back in the view's order.
    t.integer('position').notNullable();
    t.text('kind').notNullable().checkIn(['numeric', 'categorical']);
    t.bigInteger('rows').notNullable();
    t.bigInteger('mismatches').notNullable();
    t.double('mismatch_share').notNullable();
    // Numbers only: the largest |served - offline| where both are present.
    t.double('max_abs_diff');
    // Mismatches where exactly one side is null.
    t.bigInteger('null_mismatches').notNullable();
    t.primary(['monitoring_run_id', 'feature']);
  });
  const serving = await servingRole(knex);
  if (serving) {
    await knex.raw('grant insert on skew_log to ??', [serving]);
    await knex.raw('grant usage on sequence skew_log_id_seq to ??', [serving]);
  }
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('feature_skew');
  await knex('monitoring_runs').where({ kind: 'skew' }).delete();
  await knex.schema.alterTable('monitoring_runs', (t) => {
    t.dropColumn('kind');
    t.bigInteger('training_dataset_id').notNullable().alter();
    t.bigInteger('train_rows').notNullable().alter();
  });
  // Dropping the table drops its grants (and its sequence's).
  await knex.schema.dropTable('skew_log');
}

/** The schema's serving role, when it was provisioned (registry/db/roles.ts). */
async function servingRole(knex: Knex): Promise<string | undefined> {
  const result = (await knex.raw(`select current_schema() || '_serving' as name, exists (select 1 from pg_roles where rolname = current_schema() || '_serving') as exists`)) as {
    rows: Array<{ name: string; exists: boolean }>;
  };
  const row = result.rows[0];
  return row?.exists ? row.name : undefined;
}
