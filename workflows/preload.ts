/**
 * Loaded once per reused V8 context, before any workflow exists, and shared by every
 * workflow in it (WORKFLOW_BUNDLER_OPTIONS in workers/worker.ts). With a reused
 * context every other module a workflow imports runs again for each new workflow,
 * so that no state leaks between workflows; the SDK deep-freezes what is shared.
 *
 * Shared here: zod, most of the bundle's code that is not the SDK's, which keeps no
 * per-workflow state. Importing the workflows for a new workflow took 6.3-6.8 ms of
 * the worker's thread with zod loaded again, 1.6-2.3 ms with it shared. Building one schema sets zod's lazily made defaults (its
 * English messages and its memoizer, in zod's global config) before that config is
 * frozen, and keeps the bundler from dropping the import (zod declares itself free
 * of side effects). The input schemas themselves stay per workflow: zod defines a
 * schema's methods on first use, which a frozen schema refuses.
 */
import { z } from 'zod';

// A workflow parses its input once, with schemas of its own: compiling a fast path for
// each new schema (zod's JIT) cost more than it saved (the chain's input: 0.25 ms a
// workflow without it, 0.5-0.65 ms with it).
z.config({ jitless: true });
export const preloaded = z.object({ zod: z.string() });
