/**
 * Feature views: a named, versioned selection of features from one or more feature
 * groups plus a label, joined point-in-time onto a spine of labelled events.
 *
 *   export const flightDelays = defineFeatureView({
 *     name: 'flight_delays', version: 1,
 *     spine: flights, label: 'delayed',
 *     joins: [{ group: airportDelays, on: { airport: 'origin' } }],
 *     features: ['flights.distance', { feature: 'flights.hour', encoding: 'cyclical', period: 24 }, 'airport_delays.delay_mean_2h'],
 *   });
 *
 * Spine features are the spine row's own values (known at its event time); joined
 * features come from the latest row of the joined group with an event time strictly
 * before it AND known (available) at or before it, within the group's ttl. Each
 * feature carries the encoding training fits and serving applies (see ml/encoding.ts).
 * `pointInTime: 'event_time'` drops the "known" condition: corrected history, which
 * serving could not have seen at the time.
 */
import crypto from 'node:crypto';
import { z } from 'zod';
import { IDENTIFIER } from '../core/names.ts';
import type { FeatureDtype } from '../ml/signature.ts';
import { isDuration, type Duration } from '../core/duration.ts';
import type { FeatureGroupDefinition } from './definitions.ts';
import type { FeatureType } from './schema.ts';

export type Encoding =
  | { encoding: 'standardize'; missingIndicator?: boolean }
  | { encoding: 'one_hot'; maxCategories?: number }
  | { encoding: 'cyclical'; period: number }
  /** Piecewise linear over the train split's quantile bins (ml/encoding.ts); `bins` defaults to 16. */
  | { encoding: 'bins'; bins?: number; missingIndicator?: boolean };

export type FeatureRef = `${string}.${string}` | ({ feature: `${string}.${string}`; as?: string } & Partial<Encoding>);

export interface FeatureViewInput {
  name: string;
  version: number;
  description?: string;
  spine: FeatureGroupDefinition;
  label: string;
  /** `ttl` overrides the group's: rows older than it join as null. */
  joins?: Array<{ group: FeatureGroupDefinition; on: Record<string, string>; ttl?: Duration }>;
  features: FeatureRef[];
  /** 'available_at' (default): only rows known at the spine row's time; 'event_time': every earlier row, known or not. */
  pointInTime?: PointInTime;
  /** When drift monitoring raises an alert for this view's features (default DEFAULT_DRIFT_THRESHOLDS). */
  drift?: Partial<DriftThresholds>;
}

/**
 * Drift alert thresholds (registry/monitoring): a feature drifts when its population
 * stability index or (numbers only) its two-sample Kolmogorov–Smirnov statistic
 * against the training data exceeds these. `features` overrides them per feature.
 */
export interface DriftThresholds {
  psi: number;
  ks: number;
  features?: Record<string, { psi?: number; ks?: number }>;
}

/** PSI above 0.2 is the usual "significant shift"; a KS distance of 0.1 is a tenth of the mass moved. */
export const DEFAULT_DRIFT_THRESHOLDS: DriftThresholds = { psi: 0.2, ks: 0.1 };

export type PointInTime = 'available_at' | 'event_time';

/** One selected feature, resolved against its group's schema. */
export interface ViewFeature {
  /** Column name in training datasets and the name the model signature uses. */
  name: string;
  group: string;
  groupVersion: number;
  feature: string;
  type: Exclude<FeatureType, 'timestamp'>;
  dtype: FeatureDtype;
  encoding: Encoding;
}

export interface ViewJoin {
  group: string;
  version: number;
  /** Joined group's entity key -> spine column. */
  on: Record<string, string>;
  /** Rows older than this join as null. */
  ttl?: Duration;
}

export interface FeatureViewDefinition {
  name: string;
  version: number;
  description: string | undefined;
  spine: { group: string; version: number; entityKeys: string[]; eventTime: string };
  label: { name: string; type: FeatureType };
  joins: ViewJoin[];
  features: ViewFeature[];
  /** The output kind of models trained on the view, from the label's type. */
  outputKind: 'binary_classifier' | 'regressor';
  /** What a joined row must satisfy besides an earlier event time (absent in older definitions: 'available_at'). */
  pointInTime?: PointInTime;
  /** Drift alert thresholds; not part of the fingerprint (monitoring settings, not the data). Absent in older definitions: the defaults. */
  drift?: DriftThresholds;
  fingerprint: string;
}

const identifier = z.string().regex(IDENTIFIER);

export function defineFeatureView(input: FeatureViewInput): FeatureViewDefinition {
  const where = `feature view ${input.name} v${input.version}`;
  identifier.parse(input.name);
  z.number().int().positive().parse(input.version);
  const groups = new Map<string, FeatureGroupDefinition>([[input.spine.name, input.spine]]);
  const joins: ViewJoin[] = [];
  for (const j of input.joins ?? []) {
    if (groups.has(j.group.name)) throw new TypeError(`${where}: ${j.group.name} is joined twice (or is the spine)`);
    for (const key of j.group.entityKeys) {
      const spineColumn = j.on[key];
      if (!spineColumn) throw new TypeError(`${where}: join with ${j.group.name} must map its entity key ${key} to a spine column`);
      if (!input.spine.columns.some((c) => c.name === spineColumn)) throw new TypeError(`${where}: ${spineColumn} is not a column of the spine ${input.spine.name}`);
    }
    groups.set(j.group.name, j.group);
    const ttl = j.ttl ?? j.group.ttl;
    if (ttl !== undefined && !isDuration(ttl)) throw new TypeError(`${where}: the ttl of ${j.group.name} must look like 30m, 1h or 7d`);
    joins.push({ group: j.group.name, version: j.group.version, on: { ...j.on }, ...(ttl ? { ttl } : {}) });
  }
  const labelColumn = input.spine.columns.find((c) => c.name === input.label);
  if (!labelColumn) throw new TypeError(`${where}: label ${input.label} is not a column of ${input.spine.name}`);

  const features = input.features.map((ref): ViewFeature => {
    const spec = typeof ref === 'string' ? { feature: ref } : ref;
    const [groupName = '', featureName = ''] = spec.feature.split('.');
    const group = groups.get(groupName);
    if (!group) throw new TypeError(`${where}: ${spec.feature} names a group that is neither the spine nor joined`);
    const column = group.columns.find((c) => c.name === featureName);
    if (!column) throw new TypeError(`${where}: ${groupName} has no feature ${featureName}`);
    if (column.type === 'timestamp') throw new TypeError(`${where}: ${spec.feature} is a timestamp; derive numbers (hour, weekday) in the group instead`);
    if (group === input.spine && featureName === input.label) throw new TypeError(`${where}: the label ${input.label} cannot also be a feature`);
    const name = spec.as ?? featureName;
    identifier.parse(name);
    const dtype: FeatureDtype = column.type;
    return { name, group: group.name, groupVersion: group.version, feature: featureName, type: column.type, dtype, encoding: encodingOf(spec, column.type, group !== input.spine) };
  });
  const names = new Set<string>();
  const reserved = new Set([...input.spine.entityKeys, input.spine.eventTime, input.label]);
  for (const f of features) {
    if (names.has(f.name)) throw new TypeError(`${where}: two features are named ${f.name}; rename one with { feature, as }`);
    if (reserved.has(f.name) && !(f.group === input.spine.name && f.feature === f.name)) throw new TypeError(`${where}: feature name ${f.name} collides with a spine key, event time or the label`);
    names.add(f.name);
  }
  if (features.length === 0) throw new TypeError(`${where}: select at least one feature`);

  const definition = {
    name: input.name,
    version: input.version,
    description: input.description,
    spine: { group: input.spine.name, version: input.spine.version, entityKeys: input.spine.entityKeys, eventTime: input.spine.eventTime },
    label: { name: input.label, type: labelColumn.type },
    joins,
    features,
    outputKind: labelColumn.type === 'bool' ? ('binary_classifier' as const) : ('regressor' as const),
    // Recorded only when it is not the default, so older views keep their fingerprints.
    ...(input.pointInTime === 'event_time' ? { pointInTime: 'event_time' as const } : {}),
  };
  const drift = { ...DEFAULT_DRIFT_THRESHOLDS, ...input.drift };
  for (const [what, value] of Object.entries({ psi: drift.psi, ks: drift.ks, ...Object.fromEntries(Object.entries(drift.features ?? {}).flatMap(([f, t]) => Object.entries(t).map(([k, v]) => [`${f}.${k}`, v]))) })) {
    if (typeof value !== 'number' || !(value > 0)) throw new TypeError(`${where}: drift threshold ${what} must be a positive number`);
  }
  for (const f of Object.keys(drift.features ?? {})) if (!names.has(f)) throw new TypeError(`${where}: drift thresholds name ${f}, which is not a feature of the view`);
  return { ...definition, drift, fingerprint: crypto.createHash('sha256').update(JSON.stringify(definition)).digest('hex') };
}

const DEFAULT_BINS = 16;
const MAX_BINS = 256;

/** Default encodings: text one-hot; numbers standardized, with a missing indicator where a join can find nothing. */
function encodingOf(spec: Partial<Encoding>, type: FeatureType, joined: boolean): Encoding {
  if (spec.encoding === 'cyclical') {
    if (!spec.period) throw new TypeError('cyclical encoding needs a period');
    return { encoding: 'cyclical', period: spec.period };
  }
  if (spec.encoding === 'one_hot' || (spec.encoding === undefined && type === 'string')) {
    return { encoding: 'one_hot', ...(spec.encoding === 'one_hot' && spec.maxCategories ? { maxCategories: spec.maxCategories } : {}) };
  }
  if (type === 'string') throw new TypeError('text features can only be one_hot encoded');
  if (spec.encoding === 'bins') {
    const bins = spec.bins ?? DEFAULT_BINS;
    if (!Number.isInteger(bins) || bins < 2 || bins > MAX_BINS) throw new TypeError(`bins encoding needs 2 to ${MAX_BINS} bins, got ${bins}`);
    return { encoding: 'bins', bins, missingIndicator: spec.missingIndicator ?? joined };
  }
  const missingIndicator = spec.encoding === 'standardize' && spec.missingIndicator !== undefined ? spec.missingIndicator : joined;
  return { encoding: 'standardize', missingIndicator };
}
