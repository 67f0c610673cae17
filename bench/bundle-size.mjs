// The size a browser downloads for presence: rollcall's browser build (JS bundled and minified
// by esbuild, plus the Wasm) beside the `ably` package's modular build with presence
// (BaseRealtime + WebSocketTransport + FetchRequest + RealtimePresence), both gzipped.
//
//   node bench/bundle-size.mjs        (after `npm run build`)
//
// Prints a table and appends a JSON line to bench/results/bundle-size.jsonl. The test
// `tests/js/bundle-size.test.mjs` holds rollcall's figure to a budget with `measureRollcall`.

import { appendFileSync, mkdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { build } from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));

async function bundle(contents, resolveDir) {
  const result = await build({
    stdin: { contents, resolveDir, loader: 'js' },
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    // The Wasm is fetched at run time, not inlined: counted separately below.
    external: ['*.wasm'],
  });
  return Buffer.from(result.outputFiles[0].contents);
}

const gz = (bytes) => gzipSync(bytes, { level: 9 }).length;

/** rollcall's browser build: `{ js, wasm }`, each `{ raw, gzip }` in bytes. */
export async function measureRollcall() {
  const js = await bundle("export { Realtime } from './js/browser.js';", root);
  const wasm = readFileSync(new URL('../pkg/client/rollcall_client_bg.wasm', import.meta.url));
  return { js: { raw: js.length, gzip: gz(js) }, wasm: { raw: wasm.length, gzip: gz(wasm) } };
}

async function main() {
  const ours = await measureRollcall();
  const ably = await bundle(
    `import { BaseRealtime, WebSocketTransport, FetchRequest, RealtimePresence } from 'ably/modular';
     export const client = (options) => new BaseRealtime({ ...options, plugins: { WebSocketTransport, FetchRequest, RealtimePresence } });`,
    root,
  );
  const rows = [
    { what: 'rollcall JS (minified)', ...ours.js },
    { what: 'rollcall Wasm', ...ours.wasm },
    { what: 'rollcall total', raw: ours.js.raw + ours.wasm.raw, gzip: ours.js.gzip + ours.wasm.gzip },
    { what: 'ably modular + presence', raw: ably.length, gzip: gz(ably) },
  ];
  const ratio = rows[2].gzip / rows[3].gzip;
  const pad = (s, n) => String(s).padStart(n);
  console.log(`${'bundle'.padEnd(26)} ${pad('bytes', 9)} ${pad('gzip', 8)}`);
  for (const r of rows) console.log(`${r.what.padEnd(26)} ${pad(r.raw, 9)} ${pad(r.gzip, 8)}`);
  console.log(`rollcall / ably (gzip): ${ratio.toFixed(2)}  (goal: at most 0.50)`);

  mkdirSync(new URL('results/', import.meta.url), { recursive: true });
  appendFileSync(
    new URL('results/bundle-size.jsonl', import.meta.url),
    JSON.stringify({ at: new Date().toISOString(), rows, ratio }) + '\n',
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
