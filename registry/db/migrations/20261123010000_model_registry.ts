import type { Knex } from 'knex';

/**
 * The model registry: models, their numbered versions (immutable once written),
 * artifacts, normalized lineage, aliases and the append-only history of alias moves.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('models', (t) => {
    t.bigIncrements('id');
    t.text('name').notNullable().unique();
    // Version counter: never decremented, so a deleted version's number is never reused
    // and a version reference recorded on a prediction stays unambiguous.
    t.integer('last_version').notNullable().defaultTo(0);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`alter table models add constraint models_name_check check (name ~ '^[a-z][a-z0-9_]{0,62}$')`);

  await knex.schema.createTable('model_versions', (t) => {
    t.bigIncrements('id');
    t.bigInteger('model_id').notNullable().references('id').inTable('models').onDelete('CASCADE');
    t.integer('version').notNullable();
    // Set by the training activity (workflow id + step): a retry finds the version it made.
    t.text('idempotency_key');
    t.text('description');
    t.jsonb('signature').notNullable();
    t.jsonb('metrics').notNullable().defaultTo('{}');
    t.jsonb('params').notNullable().defaultTo('{}');
    // Lineage: what data, workflow and code produced this version.
    t.text('feature_view_name');
    t.integer('feature_view_version');
    t.bigInteger('training_dataset_id');
    t.text('workflow_id');
    t.text('run_id');
    t.text('code_version');
    t.text('tfjs_backend').notNullable();
    t.timestamp('trained_at', { useTz: true }).notNullable();
    t.double('training_seconds');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['model_id', 'version']);
    t.unique(['model_id', 'idempotency_key']);
    t.index(['training_dataset_id']);
    t.index(['feature_view_name', 'feature_view_version']);
  });
  await knex.raw('alter table model_versions add constraint model_versions_version_check check (version > 0)');

  await knex.schema.createTable('model_artifacts', (t) => {
    t.bigInteger('model_version_id').primary().references('id').inTable('model_versions').onDelete('CASCADE');
    t.text('format').notNullable().defaultTo('tfjs-layers-model');
    // json, not jsonb: the sha256 covers the serialized text, and jsonb would reorder keys.
    t.json('model_topology').notNullable();
    t.json('weight_specs').notNullable();
    t.json('training_config');
    t.binary('weight_data').notNullable();
    t.text('sha256').notNullable();
    t.bigInteger('size_bytes').notNullable();
  });
  await knex.raw(`alter table model_artifacts add constraint model_artifacts_sha256_check check (sha256 ~ '^[0-9a-f]{64}$')`);
  // Float weights do not compress: skip TOAST's compression attempt on write and read.
  await knex.raw('alter table model_artifacts alter column weight_data set storage external');

  // Normalized lineage, so "which versions read commit X" is an indexed query. No FK to
  // the feature store: commits are referenced by value.
  await knex.schema.createTable('model_version_commits', (t) => {
    t.bigInteger('model_version_id').notNullable().references('id').inTable('model_versions').onDelete('CASCADE');
    // Order as handed in, so lineage reads back exactly as it was registered.
    t.integer('position').notNullable();
    t.text('feature_group').notNullable();
    t.integer('feature_group_version').notNullable();
    t.bigInteger('commit_id').notNullable();
    t.primary(['model_version_id', 'feature_group', 'feature_group_version', 'commit_id']);
    t.index(['feature_group', 'feature_group_version', 'commit_id']);
  });

  await knex.schema.createTable('model_aliases', (t) => {
    t.bigInteger('model_id').notNullable().references('id').inTable('models').onDelete('CASCADE');
    t.text('alias').notNullable();
    t.integer('version').notNullable();
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['model_id', 'alias']);
    // The database itself refuses to delete a version an alias points at.
    t.foreign(['model_id', 'version']).references(['model_id', 'version']).inTable('model_versions').onDelete('RESTRICT');
    t.index(['model_id', 'version']);
  });
  await knex.raw(`alter table model_aliases add constraint model_aliases_alias_check check (alias ~ '^[a-z][a-z0-9_]{0,62}$' and alias <> 'latest')`);

  await knex.schema.createTable('model_alias_history', (t) => {
    t.bigIncrements('id');
    // No cascade: the history is append-only (a trigger refuses updates and deletes).
    t.bigInteger('model_id').notNullable().references('id').inTable('models');
    t.text('alias').notNullable();
    t.text('kind').notNullable();
    // Plain numbers, no FK: history outlives versions deleted after the alias moved on.
    t.integer('from_version');
    t.integer('to_version').notNullable();
    // For a rollback: the 'set' move it undid (each move is undone at most once).
    t.bigInteger('undoes_id').unique().references('id').inTable('model_alias_history');
    t.text('actor');
    t.text('reason');
    t.timestamp('at', { useTz: true }).notNullable();
    t.index(['model_id', 'alias', 'id']);
    t.index(['model_id', 'alias', 'at']);
  });
  await knex.raw(`alter table model_alias_history add constraint model_alias_history_kind_check check (kind in ('set', 'rollback'))`);
  await knex.raw(`
    create function model_alias_history_append_only() returns trigger language plpgsql as $$
    begin
      raise exception 'model_alias_history is append-only';
    end $$`);
  await knex.raw(`
    create trigger model_alias_history_append_only before update or delete on model_alias_history
    for each row execute function model_alias_history_append_only()`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('model_alias_history');
  await knex.raw('drop function model_alias_history_append_only()');
  await knex.schema.dropTable('model_aliases');
  await knex.schema.dropTable('model_version_commits');
  await knex.schema.dropTable('model_artifacts');
  await knex.schema.dropTable('model_versions');
  await knex.schema.dropTable('models');
}
