// Shortens the names the browser client's Wasm imports and exports (`__wbg_now_463ac581d2fc7ea3`
// becomes `a`, the module `./rollcall_client_bg.js` becomes `a`), and renames them to match in
// wasm-bindgen's glue, which refers to them only as `wasm.<export>`, as the keys of its import
// object, and in its type declarations. About 1 KB off the gzipped download.
//
//   node scripts/minify-names.mjs <dir> <name>     (scripts/build runs it on pkg/client)
//
// It also takes out of the glue what the client does without (see the end). Fails, leaving the
// build to fail, if any name or text is not found where the glue should have it, or if the
// rewritten glue no longer matches the module's imports and exports.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [dir, name] = process.argv.slice(2);
if (!dir || !name) {
  console.error('usage: node scripts/minify-names.mjs <dir> <name>');
  process.exit(2);
}
const wasmOpt = fileURLToPath(new URL('../node_modules/binaryen/bin/wasm-opt', import.meta.url));
const wasmPath = join(dir, `${name}_bg.wasm`);
const gluePath = join(dir, `${name}.js`);
const typesPath = join(dir, `${name}.d.ts`);
const wasmTypesPath = join(dir, `${name}_bg.wasm.d.ts`);

const before = new WebAssembly.Module(readFileSync(wasmPath));
const features = ['bulk-memory', 'nontrapping-float-to-int', 'sign-ext', 'mutable-globals', 'reference-types', 'multivalue'];
const map = JSON.parse(
  execFileSync(
    process.execPath,
    [wasmOpt, '--minify-imports-and-exports-and-modules', ...features.map((f) => `--enable-${f}`), wasmPath, '-o', wasmPath],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  ),
);
const after = new WebAssembly.Module(readFileSync(wasmPath));

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const fail = (why) => {
  console.error(`minify-names: ${why}`);
  process.exit(1);
};
function replace(text, pattern, to, what, { required = true } = {}) {
  let n = 0;
  const out = text.replace(pattern, () => (n++, to));
  if (required && n === 0) fail(`${what} not found in the glue`);
  return out;
}

let glue = readFileSync(gluePath, 'utf8');
let types = readFileSync(typesPath, 'utf8');
let wasmTypes = readFileSync(wasmTypesPath, 'utf8');

// The imports keep their order; only their module and name change.
const oldImports = WebAssembly.Module.imports(before);
const newImports = WebAssembly.Module.imports(after);
if (oldImports.length !== newImports.length) fail('the number of imports changed');
// Paired by position; wasm-opt's own map must say the same.
const mapped = new Map(map.imports.map(([module, name, to]) => [`${module}\0${name}`, to]));
oldImports.forEach((old, i) => {
  const to = mapped.get(`${old.module}\0${old.name}`);
  if (to !== undefined && to !== newImports[i].name) fail(`import ${old.name} moved`);
});
const modules = new Map();
oldImports.forEach((old, i) => {
  const known = modules.get(old.module);
  if (known !== undefined && known !== newImports[i].module) fail(`module ${old.module} was split`);
  modules.set(old.module, newImports[i].module);
});
for (const [from, to] of modules) {
  glue = replace(glue, new RegExp(`(["'])${escape(from)}\\1: import`, 'g'), `"${to}": import`, `module ${from}`);
}
const renamed = new Set();
oldImports.forEach((old, i) => {
  const to = newImports[i].name;
  if (old.name === to || renamed.has(old.name)) return;
  renamed.add(old.name);
  glue = replace(glue, new RegExp(`\\b${escape(old.name)}(?=: function)`, 'g'), to, `import ${old.name}`);
});

// Exports: from the map wasm-opt prints. An export the glue never calls needs no renaming.
for (const [from, to] of map.exports) {
  glue = replace(glue, new RegExp(`\\bwasm\\.${escape(from)}\\b`, 'g'), `wasm.${to}`, `export ${from}`, { required: false });
  types = replace(types, new RegExp(`readonly ${escape(from)}:`, 'g'), `readonly ${to}:`, `export ${from}`, { required: false });
  wasmTypes = replace(wasmTypes, new RegExp(`export const ${escape(from)}:`, 'g'), `export const ${to}:`, `export ${from}`, { required: false });
}

// Every name the new module uses must now appear in the glue.
for (const imp of newImports) {
  if (!glue.includes(`"${imp.module}": import`)) fail(`module ${imp.module} missing from the glue`);
  if (!new RegExp(`\\b${escape(imp.name)}: function`).test(glue)) fail(`import ${imp.name} missing from the glue`);
}
const exported = new Set(WebAssembly.Module.exports(after).map((e) => e.name));
for (const used of glue.matchAll(/\bwasm\.([A-Za-z_$][\w$]*)/g)) {
  if (!exported.has(used[1])) fail(`the glue calls wasm.${used[1]}, which the module does not export`);
}

// Generated text the browser client does without: a fallback for `TextEncoder.encodeInto`,
// which every browser, Node and workerd it runs on has, and warnings worded at length (shorter,
// they still say what happened).
glue = replace(
  glue,
  /\nif \(!\('encodeInto' in cachedTextEncoder\)\) \{\n[\s\S]*?\n\}\n/,
  '\n',
  'the encodeInto fallback',
);
glue = replace(
  glue,
  /console\.warn\("`WebAssembly\.instantiateStreaming` failed because [^"]*",/,
  'console.warn("Wasm not served as application/wasm, so compiled from its bytes:",',
  'the instantiateStreaming warning',
);
glue = replace(glue, /console\.warn\('using deprecated parameters for [^']*'\)/g, "console.warn('deprecated parameters: pass one object')", 'the deprecation warnings');

writeFileSync(gluePath, glue);
writeFileSync(typesPath, types);
writeFileSync(wasmTypesPath, wasmTypes);
