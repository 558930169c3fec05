// The architecture, as lint rules: which folder may import which.
//
//   core/        shared contracts; imports nothing of the project outside core/
//   workflows/   imports core/, workflows/, and activities/ as types only (replayed, deterministic code)
//   serving/     the HTTP front end; imported only by cli/ (and test/, bench/)
//   registry/<store>/   one folder per store, entered from outside only through its index.ts
//   no import cycles between files (type-only imports do not count)
//
// `architecture(root)` builds the config for a tree rooted at `root` (the repository root in
// eslint.config.js, a fixture tree in test/lint.test.ts), so the test checks these very rules.
// It needs no type information, only a parser for .ts files.
import path from 'node:path';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';

/** The stores under registry/, each a folder entered only through its index.ts. */
export const stores = ['db', 'feature-store', 'models', 'monitoring', 'predictions', 'training'];

/** Folders (besides serving/ itself) that may import serving/. */
export const servingImporters = ['cli', 'test', 'bench'];

const nodeBuiltins = ['assert', 'buffer', 'child_process', 'crypto', 'dns', 'events', 'fs', 'http', 'https', 'net', 'os', 'path', 'process', 'stream', 'timers', 'url', 'util', 'worker_threads', 'zlib'];

const sourceFiles = ['**/*.{ts,mts,cts,js,mjs,cjs}'];

/**
 * The `import-x/no-restricted-paths` zones. Paths are relative to `root`; `!(…)` is an extglob
 * (every folder but …). `**` does not match zero folders there, so files directly in a folder
 * get their own `*` pattern.
 */
function zones() {
  const everything = '.';
  // Anything a project file may import from outside the project: npm packages.
  const packages = './node_modules';
  return [
    // 1. registry/<store>/ is entered only through its index.ts (stores import each other that way too).
    ...stores.map((store) => ({
      target: ['*', '!(registry)/**', 'registry/*', `registry/!(${store})/**`],
      from: `registry/${store}`,
      except: ['./index.ts'],
      message: `Import registry/${store} through registry/${store}/index.ts (export what you need from there); only files inside registry/${store}/ import its other modules.`,
    })),
    // 3. core/ depends on nothing of the project.
    {
      target: 'core',
      from: everything,
      except: ['./core', packages],
      message: 'core/ holds shared contracts and imports nothing of the project outside core/: move the code you need into core/, or have the other module depend on core/ instead.',
    },
    // 4. workflows/ sees core/, itself and activities/ (types only: the value rule is in no-restricted-imports below).
    {
      target: 'workflows',
      from: everything,
      except: ['./core', './workflows', './activities', packages],
      message: 'workflows/ may import only core/, workflows/ and activity types (import type … from activities/): move shared code into core/, and do I/O in an activity.',
    },
    // 5. serving/ is the HTTP front end: only cli/ starts it (test/ and bench/ exercise it).
    {
      target: ['*', `!(serving|${servingImporters.join('|')})/**`],
      from: 'serving',
      message: `Only ${servingImporters.map((dir) => `${dir}/`).join(', ')} may import serving/: move the code you need into ml/ or core/ and import it from there (serving/ can import it too).`,
    },
  ];
}

/**
 * The architecture rules for the tree at `root` (an absolute path), as a flat-config array.
 * The caller supplies the TypeScript parser (eslint.config.js through typescript-eslint).
 */
export function architecture(root) {
  if (!path.isAbsolute(root)) throw new Error(`architecture(root): root must be an absolute path, got ${root}`);
  if (/[*?[\]{}()]/.test(root)) throw new Error(`architecture(root): glob characters in ${root} would break the zone patterns`);
  return [
    {
      name: 'architecture/imports',
      files: sourceFiles,
      plugins: { 'import-x': importX },
      settings: {
        // Without '.ts' here import-x skips every TypeScript module silently, and no-cycle finds nothing.
        'import-x/extensions': ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'],
        'import-x/external-module-folders': ['node_modules', 'node_modules/@types'],
        // Specifiers name the file (`./x.ts`), as Node and tsconfig's allowImportingTsExtensions expect.
        'import-x/resolver-next': [createNodeResolver({ extensions: ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.json', '.node'] })],
      },
      rules: {
        // The path rules and no-cycle pass silently over an import they cannot resolve: make that an error
        // for project files (relative specifiers; tsc checks packages).
        'import-x/no-unresolved': ['error', { ignore: ['^[^.]'] }],
        'import-x/no-cycle': ['error', { ignoreExternal: true }],
        'import-x/no-restricted-paths': ['error', { basePath: root, zones: zones() }],
      },
    },
    {
      // Workflow code is replayed: no I/O, no clocks, no randomness, no heavy deps.
      name: 'architecture/workflows',
      files: ['workflows/**/*.{ts,mts,cts,js,mjs,cjs}'],
      rules: {
        'no-restricted-imports': [
          'error',
          {
            paths: [...nodeBuiltins, ...nodeBuiltins.map((m) => `node:${m}`), 'knex', 'pg', 'pg-copy-streams', '@temporalio/activity', '@temporalio/worker', '@temporalio/client'].map((name) => ({
              name,
              message: 'workflow code must stay deterministic: move I/O into an activity',
            })),
            patterns: [
              { group: ['@tensorflow/*'], message: 'workflow code must not load TensorFlow.js' },
              {
                regex: '^(\\.\\./)+activities(/|$)',
                allowTypeImports: true,
                message: 'workflows import activities as types only: use `import type` and call them through proxyActivities().',
              },
            ],
          },
        ],
        'no-restricted-globals': ['error', { name: 'setTimeout', message: 'use sleep() from @temporalio/workflow' }],
        // Date.now() is allowed: the workflow sandbox replaces it with the (replayed) time
        // of the current workflow task. Randomness should be explicit, not Math.random().
        'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'use uuid4() or a seeded value from @temporalio/workflow' }],
      },
    },
  ];
}
