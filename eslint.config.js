// Lint rules that guard the architecture (see ../CONVENTIONS in the design notes):
// type-only imports, no floating promises, deterministic workflow code, and which folder
// may import which (eslint.architecture.js, checked by test/lint.test.ts).
import tseslint from 'typescript-eslint';
import { architecture } from './eslint.architecture.js';

export default tseslint.config(
  // test/fixtures/lint/ holds deliberate violations (an import cycle, a fixture tree) for test/lint.test.ts.
  { ignores: ['node_modules/**', 'dist/**', '.fti/**', '.gpu-kit/**', 'cli/bin.mjs', 'eslint.config.js', 'test/fixtures/lint/**'] },
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
  // core/ imports nothing of the project, workflows/ only core/ and activity types, only cli/
  // imports serving/, registry stores are entered through their index.ts, no import cycles;
  // plus workflow determinism (no I/O modules, setTimeout, Math.random).
  ...architecture(import.meta.dirname),
);
