/**
 * The migration list, in order. knex's migrator is given this list rather than a
 * directory so that tsx, vitest and bundlers all load the same TypeScript modules.
 * Never edit a migration that has landed; add a new file and append it here.
 */
import type { Knex } from 'knex';
import * as foundation from './20261123000000_foundation.ts';
import * as modelRegistry from './20261123010000_model_registry.ts';
import * as featureStore from './20261123020000_feature_store.ts';
import * as training from './20261123030000_training.ts';
import * as predictions from './20261123040000_predictions.ts';
import * as leastPrivilege from './20261130000000_least_privilege.ts';
import * as commitVisibility from './20261130010000_commit_visibility.ts';
import * as datasetReaping from './20261207000000_dataset_reaping.ts';
import * as partitionCompactions from './20261208000000_partition_compactions.ts';
import * as monitoring from './20261209000000_monitoring.ts';
import * as skewLog from './20261210000000_skew_log.ts';
import * as modelReports from './20261211000000_model_reports.ts';
import * as commitKnownLag from './20261212000000_commit_known_lag.ts';
import * as predictionStreamPlan from './20261213000000_prediction_stream_plan.ts';

interface Migration {
  up(knex: Knex): Promise<void>;
  down(knex: Knex): Promise<void>;
}

const migrations: Array<[string, Migration]> = [
  ['20261123000000_foundation', foundation],
  ['20261123010000_model_registry', modelRegistry],
  ['20261123020000_feature_store', featureStore],
  ['20261123030000_training', training],
  ['20261123040000_predictions', predictions],
  ['20261130000000_least_privilege', leastPrivilege],
  ['20261130010000_commit_visibility', commitVisibility],
  ['20261207000000_dataset_reaping', datasetReaping],
  ['20261208000000_partition_compactions', partitionCompactions],
  ['20261209000000_monitoring', monitoring],
  ['20261210000000_skew_log', skewLog],
  ['20261211000000_model_reports', modelReports],
  ['20261212000000_commit_known_lag', commitKnownLag],
  ['20261213000000_prediction_stream_plan', predictionStreamPlan],
];

export const migrationSource: Knex.MigrationSource<[string, Migration]> = {
  getMigrations: async () => migrations,
  getMigrationName: ([name]) => name,
  getMigration: async ([, migration]) => migration,
};
