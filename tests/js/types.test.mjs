// The TypeScript declarations are a promise to apps: code ported from `ably` compiles against
// them (tests/js/fixtures/types/ported.ts, with TypeScript's strictest settings), and every
// value they declare is exported by each entry point of the package.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

const root = fileURLToPath(new URL('../..', import.meta.url));
const read = (path) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

test('code ported from ably compiles against the declarations, and what must not compile does not', () => {
  try {
    execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tests/js/fixtures/types'], { cwd: root, encoding: 'utf8' });
  } catch (e) {
    assert.fail(`tsc found errors:\n${e.stdout}${e.stderr}`);
  }
});

/** The names an entry point exports, as a bundler sees them. */
async function exportsOf(entry) {
  const result = await build({
    entryPoints: [entry],
    absWorkingDir: root,
    bundle: true,
    format: 'esm',
    write: false,
    metafile: true,
    logLevel: 'silent',
    outdir: 'out',
    external: ['*.wasm', 'ws', 'node:*'],
  });
  return Object.values(result.metafile.outputs)[0].exports;
}

test('every value the declarations name is exported by the browser, Node and Workers builds', async () => {
  const dts = read('js/index.d.ts');
  const values = [...dts.matchAll(/^export (?:declare )?(?:abstract )?(?:class|function|const) (\w+)/gm)].map((m) => m[1]);
  const defaults = dts.match(/declare const _default: \{([^}]*)\}/)[1].match(/\w+(?=:)/g);
  assert.ok(values.includes('Realtime') && defaults.includes('Realtime'), 'the declarations were read');
  for (const entry of ['js/browser.js', 'js/node.js', 'js/workerd.js']) {
    const names = await exportsOf(entry);
    for (const v of values) assert.ok(names.includes(v), `${entry} exports ${v}`);
    assert.ok(names.includes('default'), `${entry} has a default export`);
    const given = read(entry).match(/export default \{([^}]*)\}/)[1].split(',').map((s) => s.trim());
    assert.deepEqual(given.sort(), [...defaults].sort(), `${entry}'s default export is the one declared`);
  }
});
