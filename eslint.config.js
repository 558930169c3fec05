// Lint rules that guard the architecture (see ../CONVENTIONS in the design notes):
// type-only imports, no floating promises, and deterministic workflow code.
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['assert', 'buffer', 'child_process', 'crypto', 'dns', 'events', 'fs', 'http', 'https', 'net', 'os', 'path', 'process', 'stream', 'timers', 'url', 'util', 'worker_threads', 'zlib'];

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', '.fti/**', 'cli/bin.mjs', 'eslint.config.js'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // Workflow code is replayed: no I/O, no clocks, no randomness, no heavy deps.
    files: ['workflows/**/*.ts'],
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
            { group: ['../registry/*', '../../registry/*', '../ml/*', '../activities/*', '../workers/*'], allowTypeImports: true, message: 'workflows import activity and registry *types* only' },
          ],
        },
      ],
      'no-restricted-globals': ['error', { name: 'setTimeout', message: 'use sleep() from @temporalio/workflow' }],
      // Date.now() is allowed: the workflow sandbox replaces it with the (replayed) time
      // of the current workflow task. Randomness should be explicit, not Math.random().
      'no-restricted-properties': ['error', { object: 'Math', property: 'random', message: 'use uuid4() or a seeded value from @temporalio/workflow' }],
    },
  },
);
