// Runs the Cloudflare host locally on workerd (through miniflare, which embeds it): the same
// Worker and Durable Object a deployment runs, the demo page and the package as static assets.
//
//   npm run edge            (http://localhost:8787; PORT, HOST, ROLLCALL_KEYS, ROLLCALL_HUB, ROLLCALL_EDGE_STATE)

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Miniflare } from 'miniflare';

const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * Starts the edge host. `persist`: a folder for Durable Object storage (default: in memory);
 * `hub`: hub settings (an object, or its JSON text), as `ROLLCALL_HUB` gives them to a deployment;
 * `script`: the Worker module, if not `js/hub/worker.js`; `vars`: the deployment's other `[vars]`
 * (`ROLLCALL_DEFAULT_SHARD`, `ROLLCALL_SERVER_ID`).
 * Resolves once it listens; `close()` stops it.
 */
export async function startEdgeHub({ port = 8787, host = '127.0.0.1', keys = '', hub, persist, script, vars = {} } = {}) {
  // As the Node host: without keys any key and any clientId are accepted, so only on loopback.
  // (The Worker also refuses other host names then, but a request can name any host.)
  // As the Worker reads them: a list, or a JSON list of { key, capability } (`[]` names none).
  const named = keys.trim().startsWith('[') ? (() => { try { return JSON.parse(keys).some((e) => e?.key); } catch { return false; } })() : keys.split(',').some((k) => k.trim());
  if (!named && !LOOPBACK.has(host)) {
    throw new Error(
      `refusing to listen on ${host} without keys: in development mode any key and any clientId are ` +
        'accepted, so the edge hub only listens on loopback. Set ROLLCALL_KEYS to serve other machines.',
    );
  }
  if (persist) mkdirSync(persist, { recursive: true });
  const mf = new Miniflare({
    modules: true,
    // `script`: another module that exports the Worker and `HubObject` (tests).
    scriptPath: script ?? join(root, 'js', 'hub', 'worker.js'),
    modulesRoot: root,
    modulesRules: [
      { type: 'ESModule', include: ['**/*.js'] },
      { type: 'CompiledWasm', include: ['**/*.wasm'] },
    ],
    compatibilityDate: '2025-04-01',
    durableObjects: { HUB: { className: 'HubObject', useSQLite: true } },
    durableObjectsPersist: persist ?? false,
    assets: {
      directory: join(root, 'pkg', 'edge-assets'),
      binding: 'ASSETS',
      routerConfig: { invoke_user_worker_ahead_of_assets: true, has_user_worker: true },
    },
    bindings: {
      ...vars,
      ...(keys ? { ROLLCALL_KEYS: keys } : {}),
      ...(hub ? { ROLLCALL_HUB: hub } : {}),
    },
    host,
    port,
    cf: false,
  });
  const url = await mf.ready;
  const origin = url.origin;
  return {
    url: origin,
    port: Number(url.port),
    mf,
    async close() {
      await mf.dispose();
    },
  };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = Number(process.env.PORT ?? 8787);
  const keys = process.env.ROLLCALL_KEYS ?? '';
  const persist = process.env.ROLLCALL_EDGE_STATE ?? join(root, 'target', 'edge-state');
  const host = process.env.HOST ?? '127.0.0.1';
  const hub = process.env.ROLLCALL_HUB;
  // As `[vars]` in wrangler.toml give them to a deployment.
  const vars = Object.fromEntries(
    ['ROLLCALL_DEFAULT_SHARD', 'ROLLCALL_SERVER_ID'].filter((name) => process.env[name]).map((name) => [name, process.env[name]]),
  );
  const running = await startEdgeHub({ port, host, keys, hub, persist, vars }).catch((error) => {
    console.error(`rollcall: ${error.message}`);
    process.exit(1);
  });
  console.log(`rollcall edge hub (workerd) listening on http://localhost:${running.port}  (WebSocket at ws://localhost:${running.port}/)`);
  console.log(`Durable Object storage in ${persist}`);
  if (!keys) console.log('development mode: no keys configured, any key and any clientId are accepted (localhost only)');
  const stop = async () => {
    await running.close();
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
