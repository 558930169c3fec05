/**
 * The architecture lint rules (eslint.architecture.js) bite: each rule is shown a violation
 * and a clean import. Path rules run against a small fixture tree (test/fixtures/lint/tree/)
 * with the very config eslint.config.js spreads for the repository root, so these checks do
 * not depend on where the real modules live. No type information is needed: it runs in seconds.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import { describe, expect, it } from 'vitest';

const repoRoot = path.resolve(import.meta.dirname, '..');
// eslint.architecture.js is plain JS (eslint.config.js imports it) with no declarations for tsc: load it by URL.
const { architecture } = (await import(pathToFileURL(path.join(repoRoot, 'eslint.architecture.js')).href)) as {
  architecture: (root: string) => Linter.Config[];
};
const fixtures = path.join(repoRoot, 'test/fixtures/lint');
const treeRoot = path.join(fixtures, 'tree');

const RESTRICTED_PATHS = 'import-x/no-restricted-paths';
const RESTRICTED_IMPORTS = 'no-restricted-imports';
const NO_CYCLE = 'import-x/no-cycle';

/** An ESLint that applies only the architecture rules for the tree at `root`. */
function architectureLint(root: string): ESLint {
  return new ESLint({
    cwd: root,
    ignore: false,
    overrideConfigFile: true,
    overrideConfig: [{ files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } }, ...architecture(root)],
  });
}

const tree = architectureLint(treeRoot);

/** The messages for `code` linted as if it were the file `file` (relative to the fixture tree). */
async function lint(code: string, file: string): Promise<Linter.LintMessage[]> {
  const [result] = await tree.lintText(code, { filePath: path.join(treeRoot, file) });
  return result!.messages;
}

/** Expects exactly one error, from `ruleId`, whose message mentions `hint`. */
function expectOneError(messages: Linter.LintMessage[], ruleId: string, hint: string): void {
  expect(messages.map((m) => ({ ruleId: m.ruleId, severity: m.severity }))).toEqual([{ ruleId, severity: 2 }]);
  expect(messages[0]!.message).toContain(hint);
}

describe('architecture lint rules', () => {
  it('rejects a deep import into another store', async () => {
    expectOneError(await lint(`import { id } from '../registry/db/sql.ts';\nexport const q = id('t');\n`, 'activities/lint-fixture.ts'), RESTRICTED_PATHS, 'registry/db/index.ts');
    expect(await lint(`import { x } from '../registry/db/index.ts';\nexport const y = x;\n`, 'activities/lint-fixture.ts')).toEqual([]);
    // Store to store: through the other store's index.ts only.
    expectOneError(await lint(`import { id } from '../db/sql.ts';\nexport const q = id('t');\n`, 'registry/models/lint-fixture.ts'), RESTRICTED_PATHS, 'registry/db/index.ts');
    expect(await lint(`import { id } from '../db/index.ts';\nexport const q = id('t');\n`, 'registry/models/lint-fixture.ts')).toEqual([]);
    // Inside a store, modules import each other freely.
    expect(await lint(`import { id } from './sql.ts';\nexport const q = id('t');\n`, 'registry/db/lint-fixture.ts')).toEqual([]);
    // An import that does not resolve would slip past every path rule: it is an error of its own.
    expectOneError(await lint(`import { id } from '../registry/db/moved-away.ts';\nexport const q = id('t');\n`, 'activities/lint-fixture.ts'), 'import-x/no-unresolved', 'moved-away.ts');
    // A file directly under registry/ is outside every store.
    expectOneError(await lint(`import { ModelRow } from './models/rows.ts';\nexport const r = new ModelRow();\n`, 'registry/lint-fixture.ts'), RESTRICTED_PATHS, 'registry/models/index.ts');
  });

  it('rejects an import cycle', async () => {
    // cycle-a.ts <-> cycle-b.ts are committed files (ignored by `npm run lint`); no-cycle has to resolve
    // their `.ts` specifiers and parse them, or it would report nothing.
    const [result] = await architectureLint(repoRoot).lintFiles([path.join(fixtures, 'cycle-a.ts')]);
    expect(result!.messages.map((m) => m.ruleId)).toEqual([NO_CYCLE]);
    expect(result!.messages[0]!.message).toContain('Dependency cycle');
    // The same imports without the way back are fine.
    expect(await lint(`import { durationMs } from '../features/duration.ts';\nexport const ms = durationMs(1);\n`, 'activities/lint-fixture.ts')).toEqual([]);
  });

  it('keeps core/ free of project imports', async () => {
    expectOneError(await lint(`import { durationMs } from '../features/duration.ts';\nexport const ms = durationMs(1);\n`, 'core/lint-fixture.ts'), RESTRICTED_PATHS, 'core/');
    expectOneError(await lint(`import type { FeatureResult } from '../activities/feature.ts';\nexport type R = FeatureResult;\n`, 'core/lint-fixture.ts'), RESTRICTED_PATHS, 'core/');
    const clean = `import path from 'node:path';\nimport { z } from 'zod';\nimport { IDENTIFIER } from './names.ts';\nexport const name = z.string().regex(IDENTIFIER);\nexport const sep = path.sep;\n`;
    expect(await lint(clean, 'core/lint-fixture.ts')).toEqual([]);
  });

  it('lets workflows import only core and activity types', async () => {
    const file = 'workflows/lint-fixture.ts';
    expectOneError(await lint(`import { createFeatureActivities } from '../activities/feature.ts';\nexport const acts = createFeatureActivities;\n`, file), RESTRICTED_IMPORTS, 'import type');
    expectOneError(await lint(`import { x } from '../registry/db/index.ts';\nexport const y = x;\n`, file), RESTRICTED_PATHS, 'workflows/ may import only');
    expectOneError(await lint(`import type { ModelRow } from '../registry/models/index.ts';\nexport type R = ModelRow;\n`, file), RESTRICTED_PATHS, 'workflows/ may import only');
    expectOneError(await lint(`import { durationMs } from '../features/duration.ts';\nexport const ms = durationMs(1);\n`, file), RESTRICTED_PATHS, 'move shared code into core/');
    const clean = [
      `import { proxyActivities } from '@temporalio/workflow';`,
      `import type { createFeatureActivities, FeatureResult } from '../activities/feature.ts';`,
      `import { type FeatureResult as Result } from '../activities/feature.ts';`,
      `import { IDENTIFIER } from '../core/names.ts';`,
      `export const acts = proxyActivities<ReturnType<typeof createFeatureActivities>>({ startToCloseTimeout: '1 minute' });`,
      `export type R = FeatureResult | Result;`,
      `export const ok = IDENTIFIER.test('x');`,
    ].join('\n');
    expect(await lint(clean, file)).toEqual([]);
    // The determinism rules still hold.
    const nondeterministic = `import fs from 'node:fs';\nexport const r = Math.random();\nsetTimeout(() => fs, 1);\n`;
    expect((await lint(nondeterministic, file)).map((m) => m.ruleId).sort()).toEqual(['no-restricted-globals', 'no-restricted-imports', 'no-restricted-properties']);
  });

  it('lets only cli import serving', async () => {
    const code = `import { buildServer } from '../serving/server.ts';\nexport const server = buildServer();\n`;
    expectOneError(await lint(code, 'activities/lint-fixture.ts'), RESTRICTED_PATHS, 'Only cli/');
    expectOneError(await lint(code, 'ml/lint-fixture.ts'), RESTRICTED_PATHS, 'Only cli/');
    expectOneError(await lint(`import { buildServer } from '../../serving/server.ts';\nexport const s = buildServer();\n`, 'registry/models/lint-fixture.ts'), RESTRICTED_PATHS, 'Only cli/');
    expectOneError(await lint(`import { buildServer } from './serving/server.ts';\nexport const s = buildServer();\n`, 'lint-fixture.ts'), RESTRICTED_PATHS, 'Only cli/');
    expect(await lint(code, 'cli/lint-fixture.ts')).toEqual([]);
    expect(await lint(`import { buildServer } from '../../serving/server.ts';\nexport const s = buildServer();\n`, 'cli/commands/lint-fixture.ts')).toEqual([]);
    expect(await lint(code, 'test/lint-fixture.ts')).toEqual([]);
    expect(await lint(code, 'bench/lint-fixture.ts')).toEqual([]);
    expect(await lint(`import { buildServer } from './server.ts';\nexport const s = buildServer();\n`, 'serving/lint-fixture.ts')).toEqual([]);
  });

  it('applies these rules in eslint.config.js, with the fixtures left out of `npm run lint`', async () => {
    // Computing a config neither parses nor type-checks anything.
    const real = new ESLint({ cwd: repoRoot });
    const expected = architecture(repoRoot);
    const config = (await real.calculateConfigForFile(path.join(repoRoot, 'workflows/lint-fixture.ts'))) as Linter.Config;
    for (const block of expected) {
      for (const [rule, entry] of Object.entries(block.rules ?? {})) {
        const [severity, ...options] = [entry].flat() as [Linter.RuleSeverity, ...unknown[]];
        // (ESLint fills in the rules' default options, hence toMatchObject.)
        expect(config.rules?.[rule], rule).toMatchObject([{ off: 0, warn: 1, error: 2 }[severity as string] ?? severity, ...options]);
      }
    }
    expect(await real.isPathIgnored(path.join(fixtures, 'cycle-a.ts'))).toBe(true);
    expect(await real.isPathIgnored(path.join(treeRoot, 'registry/db/sql.ts'))).toBe(true);
    expect(await real.isPathIgnored(path.join(repoRoot, 'eslint.architecture.js'))).toBe(false);
  });
});
