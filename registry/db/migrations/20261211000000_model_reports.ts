import type { Knex } from 'knex';
import { grantServingRead } from '../roles.ts';

/**
 * Model reports (registry/models/reports.ts): one self-contained HTML page per model
 * version, with the data it was drawn from. The worker role writes them (default
 * privileges); the serving role reads them for GET /models/{name}/{version}/report.
 */
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('model_reports', (t) => {
    t.bigInteger('model_version_id').primary().references('model_versions.id').onDelete('cascade');
    t.text('html').notNullable();
    t.jsonb('data').notNullable();
    t.text('source').notNullable().checkIn(['training', 'on_demand']);
    t.timestamp('generated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await grantServingRead(knex, 'model_reports');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('model_reports');
}
