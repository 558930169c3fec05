/**
 * The fraud example several store tests share: labelled events (the spine), a score per
 * user (joined on user_id), and the view of the two (events.amount, scores.score). Each
 * test writes its own rows; only the definitions are shared.
 */
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineFeatureView } from '../../features/views.ts';

export const events = defineFeatureGroup({
  name: 'events',
  version: 1,
  entityKeys: ['event_id'],
  eventTime: 'at',
  features: { event_id: 'int', at: 'timestamp', user_id: 'string', amount: 'float', fraud: 'bool' },
  source: { kind: 'ndjson', path: '/dev/null' },
  label: 'fraud',
});

export const scores = defineFeatureGroup({
  name: 'scores',
  version: 1,
  entityKeys: ['user_id'],
  eventTime: 'at',
  features: { user_id: 'string', at: 'timestamp', score: 'float' },
  source: { kind: 'ndjson', path: '/dev/null' },
});

export const fraudView = defineFeatureView({
  name: 'fraud_view',
  version: 1,
  spine: events,
  label: 'fraud',
  joins: [{ group: scores, on: { user_id: 'user_id' } }],
  features: ['events.amount', 'scores.score'],
});
