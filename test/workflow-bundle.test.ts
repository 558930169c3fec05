/**
 * The workflow bundle the CPU worker runs (built by global-setup with the worker's own
 * WORKFLOW_BUNDLER_OPTIONS), evaluated the way the SDK's reused V8 context evaluates
 * it: modules loaded before any workflow exists (the preloaded ones) go into a cache
 * every workflow shares and are then deep-frozen; every other module runs again in each
 * new workflow's own cache.
 */
import fs from 'node:fs';
import vm from 'node:vm';
import { describe, expect, inject, it } from 'vitest';
import { parseWorkflowInput } from '../core/errors.ts';
import { FtiPipelineInputSchema } from '../core/inputs.ts';
import { BatchInferenceInputSchema } from '../core/inference-inputs.ts';

interface BundleModule {
  exports: Record<string, unknown>;
}

/** Object.freeze all the way down, as the SDK freezes what its workflows share. */
function deepFreeze(value: unknown, seen = new WeakSet<object>()): void {
  if (value === null || (typeof value !== 'object' && typeof value !== 'function') || seen.has(value)) return;
  seen.add(value);
  if (typeof value === 'object') {
    for (const key of Reflect.ownKeys(value)) {
      try {
        deepFreeze((value as Record<string | symbol, unknown>)[key], seen);
      } catch {
        // As the SDK: some objects (typed arrays) cannot be frozen.
      }
    }
  }
  try {
    Object.freeze(value);
  } catch {
    // Ditto.
  }
}

/** The bundle in a context of its own: the modules shared by every workflow, and a loader of one new workflow's modules. */
function loadBundle(code: string): { shared: Map<string, BundleModule>; newWorkflow: () => Map<string, BundleModule> } {
  const shared = new Map<string, BundleModule>();
  let own: Map<string, BundleModule> | undefined;
  const cache = new Proxy(
    {},
    {
      get: (_, key: string) => shared.get(key) ?? own?.get(key),
      set: (_, key: string, module: BundleModule) => {
        (own ?? shared).set(key, module);
        return true;
      },
    },
  );
  const context = vm.createContext({});
  Object.defineProperty(context, '__webpack_module_cache__', { value: cache });
  vm.runInContext(code, context);
  vm.runInContext('__TEMPORAL__.preloadModules?.()', context);
  for (const module of shared.values()) deepFreeze(module);
  const importWorkflows = vm.runInContext('() => __TEMPORAL__.importWorkflows()', context) as () => unknown;
  return {
    shared,
    newWorkflow: () => {
      own = new Map();
      importWorkflows();
      return own;
    },
  };
}

const chain = {
  features: { groups: ['flights', 'airport_delays'], start: '2001-02-01T00:00:00Z', end: '2001-02-04T00:00:00Z' },
  training: { featureView: 'flight_delays', model: 'bench_chain', start: '2001-02-01T00:00:00Z', end: '2001-02-03T00:00:00Z', params: { hiddenUnits: [16], epochs: 1 } },
  inference: { start: '2001-02-03T00:00:00Z', end: '2001-02-04T00:00:00Z' },
};

describe('workflow bundle', () => {
  it('loads zod once for all workflows, frozen, and still parses every input as outside the sandbox', () => {
    const { shared, newWorkflow } = loadBundle(fs.readFileSync(inject('workflowBundlePath'), 'utf8'));
    const isZod = (key: string) => key.includes('/node_modules/zod/');
    expect([...shared.keys()].filter(isZod).length).toBeGreaterThan(5);

    const cases: Array<[string, string, unknown]> = [
      ['ftiPipeline', 'FtiPipelineInputSchema', chain],
      ['ftiPipeline', 'FtiPipelineInputSchema', { ...chain, features: { groups: ['Flights'] }, extra: 1 }],
      ['batchInference', 'BatchInferenceInputSchema', { model: 'm', start: '2001-02-03T00:00:00Z', end: '2001-02-04T00:00:00Z' }],
      ['batchInference', 'BatchInferenceInputSchema', { model: 3, end: 'tomorrow' }],
    ];
    const outside: Record<string, unknown> = { FtiPipelineInputSchema, BatchInferenceInputSchema };
    for (let workflow = 0; workflow < 2; workflow++) {
      const own = newWorkflow();
      // No zod module runs again per workflow; the input schemas are the workflow's own (zod defines their methods on first use, which a frozen schema would refuse).
      expect([...own.keys()].filter(isZod)).toEqual([]);
      expect([...own.keys()]).toEqual(expect.arrayContaining(['./core/inputs.ts', './core/inference-inputs.ts', './workflows/fti-pipeline.ts']));
      const schemas = { ...own.get('./core/inputs.ts')?.exports, ...own.get('./core/inference-inputs.ts')?.exports };
      const errors = own.get('./core/errors.ts') ?? shared.get('./core/errors.ts');
      const parse = errors?.exports.parseWorkflowInput as typeof parseWorkflowInput;
      for (const [name, schema, input] of cases) {
        // Through JSON: values made in the sandbox have its own prototypes.
        const inside = JSON.parse(JSON.stringify(parse(name, schemas[schema] as never, input))) as unknown;
        expect(inside).toEqual(JSON.parse(JSON.stringify(parseWorkflowInput(name, outside[schema] as never, input))));
      }
    }
  });
});
