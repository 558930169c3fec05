/**
 * The batchInference workflow's input: one JSON object, validated on entry (pure,
 * so the workflow sandbox can load it).
 *
 *   { "model": "flight_delay", "alias": "champion", "start": "2001-01-03T00:00:00Z", "end": "2001-01-04T00:00:00Z" }
 *
 * `alias` and `version` are exclusive; with neither, the run scores with the
 * `champion` alias. Whichever it names is resolved once, when the run starts, and
 * that version number is pinned for the whole run (and for any re-run of its run id).
 */
import { z } from 'zod';
import { duration, identifier, isoTime, parallelism } from './inputs.ts';

/** The alias a batch run or an online request uses when it names none. */
export const DEFAULT_ALIAS = 'champion';

/** Partitions one run may fan out to (each is one activity, one transaction). */
export const MAX_PARTITIONS = 256;

/** Printable ASCII without spaces: safe in logs, URLs and the Temporal UI. */
export const runIdSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');

export const BatchInferenceInputSchema = z
  .object({
    model: identifier,
    /** An alias of the model (`champion`, `challenger`, `latest`…); exclusive with version. */
    alias: identifier.optional(),
    version: z.number().int().positive().optional(),
    /** The spine rows to score: event time in [start, end). */
    start: isoTime.optional(),
    end: isoTime.optional(),
    /** For scheduled runs: the window is [fire time - scheduleWindow, fire time). */
    scheduleWindow: duration.optional(),
    /** Identifies the prediction run; default: the workflow id. A re-run of a completed run id adds nothing. */
    runId: runIdSchema.optional(),
    /** Time slices of the window, each with about as many spine rows, scored by parallel activities; default: one per 250k rows. */
    partitions: z.number().int().min(1).max(MAX_PARTITIONS).optional(),
    parallelism: parallelism.optional(),
  })
  .strict()
  .refine((i) => i.alias === undefined || i.version === undefined, { message: 'give alias or version, not both', path: ['version'] })
  .refine((i) => (i.start !== undefined && i.end !== undefined) || (i.start === undefined && i.end === undefined && i.scheduleWindow !== undefined), {
    message: 'start and end are required (or scheduleWindow alone, for runs started by a Temporal Schedule)',
    path: ['start'],
  })
  .refine((i) => !i.start || !i.end || Date.parse(i.start) < Date.parse(i.end), { message: 'start must be before end', path: ['end'] });
export type BatchInferenceInput = z.input<typeof BatchInferenceInputSchema>;
