/**
 * The flights example: will a US flight (2001, vega-datasets) leave more than 15
 * minutes late? Two feature groups and the feature view that joins them:
 *
 *   flights         one row per flight: route, distance, hour, weekday, and the
 *                   label `delayed` (delay > 15 min); keyed by flight_id, its row
 *                   in the source file. Its outcome (the delay) is known only when
 *                   the flight leaves: `departed_at`, its available-at time.
 *   airport_delays  per origin airport, at any time t: mean delay, share of delayed
 *                   flights and number of flights over the past 1 h, 2 h, 24 h and
 *                   7 d, counting only flights scheduled in [t - window, t) that had
 *                   left by t (exact at any t: its rows are the
 *                   instants the windows change)
 *
 * Version 2: version 1 counted a flight's delay from its scheduled time, although
 * nobody knows a delay before the flight leaves (up to 50 hours later): its 1 h and
 * 2 h windows leaked outcomes that serving could never have seen.
 * Version 3 (airport_delays, flight_delays): exact windows. Version 2 stored the
 * windows only at scheduled departures, and a flight took the one before its own:
 * it missed what happened between the two.
 */
import { defineFeatureGroup } from '../../features/definitions.ts';
import { defineProject } from '../../features/project.ts';
import { defineFeatureView } from '../../features/views.ts';
import { FLIGHTS_3M_PARQUET } from './data.ts';

export const DELAY_THRESHOLD_MINUTES = 15;

export const flights = defineFeatureGroup({
  name: 'flights',
  version: 2,
  description: 'US domestic flights of Jan-Jun 2001, one row per flight, labelled delayed when more than 15 minutes late',
  entityKeys: ['flight_id'],
  eventTime: 'event_time',
  features: {
    flight_id: 'int',
    event_time: 'timestamp',
    origin: 'string',
    destination: 'string',
    distance: 'float',
    delay: 'float',
    delayed: 'bool',
    hour: 'int',
    weekday: 'int',
    departed_at: 'timestamp',
  },
  // What a row says is known when the flight leaves (its delay); before, not even the schedule's outcome.
  availability: { column: 'departed_at' },
  label: 'delayed',
  source: { kind: 'parquet', path: FLIGHTS_3M_PARQUET, timeColumn: 'date' },
  // The raw columns the transform reads, typed before it sees them whatever the file format
  // (a late-rows NDJSON or CSV gives text); a file without them is refused before any row
  // is read. A file may also carry `flight_id` (a late row or a correction of a known flight).
  sourceColumns: { date: 'timestamp', delay: 'float', distance: 'float', origin: 'string', destination: 'string' },
  // The file's timestamps are local wall-clock times without a zone; they are kept as UTC.
  timeZone: 'UTC',
  transform: (raw, { rowNumber }) => {
    const date = raw.date instanceof Date ? raw.date : null;
    const delay = typeof raw.delay === 'number' ? raw.delay : null;
    return {
      // The source row for the 3M file (it has no id column); a late-rows file may give its own.
      flight_id: raw.flight_id ?? rowNumber,
      event_time: date,
      origin: raw.origin,
      destination: raw.destination,
      distance: raw.distance,
      delay,
      delayed: delay === null ? null : delay > DELAY_THRESHOLD_MINUTES,
      hour: date?.getUTCHours() ?? null,
      weekday: date?.getUTCDay() ?? null,
      // An early departure is known at its schedule at the earliest: the row exists from then.
      departed_at: date === null || delay === null ? null : new Date(date.getTime() + Math.max(delay, 0) * 60_000),
    };
  },
  online: true,
  validation: 'quarantine',
  expectations: [
    { kind: 'not_null', column: 'origin' },
    { kind: 'not_null', column: 'destination' },
    { kind: 'not_null', column: 'delay' },
    { kind: 'range', column: 'distance', min: 1, max: 6000 },
    { kind: 'range', column: 'delay', min: -120, max: 3000 },
  ],
});

export const airportDelays = defineFeatureGroup({
  name: 'airport_delays',
  version: 3,
  description: 'Rolling departure delays at each origin airport, exact at any time (flights scheduled in each window and departed by then)',
  entityKeys: ['airport'],
  eventTime: 'event_time',
  source: { kind: 'feature_group', name: 'flights', version: 2 },
  aggregation: {
    groupBy: { airport: 'origin' },
    windows: ['1h', '2h', '24h', '7d'],
    metrics: [
      { name: 'delay_mean', fn: 'avg', column: 'delay' },
      { name: 'delayed_share', fn: 'avg', column: 'delayed' },
      { name: 'flights', fn: 'count' },
    ],
  },
  online: true,
});

/**
 * What the delay model sees for a flight: its own route and schedule, and the
 * origin airport's recent delays as they were known at its scheduled departure.
 */
export const flightDelays = defineFeatureView({
  name: 'flight_delays',
  version: 3,
  description: 'Flight schedule features plus origin-airport rolling delays, point-in-time',
  spine: flights,
  label: 'delayed',
  joins: [{ group: airportDelays, on: { airport: 'origin' } }],
  features: [
    'flights.distance',
    { feature: 'flights.hour', encoding: 'cyclical', period: 24 },
    { feature: 'flights.weekday', encoding: 'cyclical', period: 7 },
    { feature: 'flights.origin', encoding: 'one_hot', maxCategories: 50 },
    ...(['1h', '2h', '24h', '7d'] as const).flatMap((w) => [
      `airport_delays.delay_mean_${w}` as const,
      `airport_delays.delayed_share_${w}` as const,
      `airport_delays.flights_${w}` as const,
    ]),
  ],
});

export default defineProject({ featureGroups: [flights, airportDelays], featureViews: [flightDelays] });
