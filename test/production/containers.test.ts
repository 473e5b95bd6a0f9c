/**
 * The Dockerfile and docker-compose.yml, checked without a Docker engine (none runs here): the image's shape
 * (a build stage, then a slim Node 24 runtime with production dependencies only, non-root, tini as init,
 * exec-form CMD `node dist/server.js`, a HEALTHCHECK on /readyz) and every setting the compose file and the
 * Dockerfile give the service, against the configuration schema (src/config.ts) and through loadConfig.
 * Not checked here: that the image builds, that KurrentDB 26.0 starts and its health check passes.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parse } from 'yaml';
import { EnvSchema, loadConfig } from '../../src/config.js';
import { root } from '../support/production.js';

type Instruction = { keyword: string; args: string };

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function instructions(text: string): Instruction[] {
  const joined = text.replace(/\\\n/g, ' ');
  return joined
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const [keyword = '', ...rest] = l.split(/\s+/);
      return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
    });
}

/** `ENV A=1 B=2` (and the one-pair `ENV A 1`) as an object. */
function envOf(args: string): Record<string, string> {
  const pairs = [...args.matchAll(/([A-Z_][A-Z0-9_]*)=("[^"]*"|\S+)/g)].map((m) => [m[1] ?? '', (m[2] ?? '').replace(/^"|"$/g, '')]);
  if (pairs.length > 0) return Object.fromEntries(pairs);
  const [name = '', ...value] = args.split(/\s+/);
  return { [name]: value.join(' ') };
}

const known = new Set(Object.keys(EnvSchema.properties));
const dockerfile = instructions(readFileSync(join(root, 'Dockerfile'), 'utf8'));

t.test('Dockerfile: a build stage, then a slim Node 24 runtime', async (t) => {
  const stages = dockerfile.filter((i) => i.keyword === 'FROM');
  t.ok(stages.length >= 2, 'multi-stage');
  t.match(stages[0]?.args, /^node:24\S* AS build$/i, 'the build stage is named build');
  const runtime = stages.at(-1)?.args ?? '';
  t.match(runtime, /^node:24(\.\d+)*-\S*slim\S*( AS \w+)?$/i, `the runtime is a slim Node 24 image (${runtime})`);
  const lastFrom = dockerfile.lastIndexOf(stages.at(-1) as Instruction);
  const buildStage = dockerfile.slice(0, lastFrom);
  const runtimeStage = dockerfile.slice(lastFrom);
  t.ok(buildStage.some((i) => i.keyword === 'RUN' && /npm ci/.test(i.args)), 'the build stage installs from the lock file');
  t.ok(buildStage.some((i) => i.keyword === 'RUN' && /npm run build/.test(i.args) && /npm prune --omit=dev/.test(i.args)), 'builds, then drops the dev dependencies');
  t.ok(runtimeStage.some((i) => i.keyword === 'COPY' && /--from=build .*node_modules/.test(i.args)), 'the runtime takes the pruned node_modules');
  t.ok(runtimeStage.some((i) => i.keyword === 'COPY' && /--from=build .*dist/.test(i.args)), 'and dist/');
  t.notOk(runtimeStage.some((i) => i.keyword === 'COPY' && !i.args.includes('--from=build')), 'nothing from the build context lands in the runtime (no sources, no host node_modules)');
  for (const i of buildStage.filter((i) => i.keyword === 'COPY')) {
    for (const path of i.args.split(/\s+/).slice(0, -1).filter((p) => !p.startsWith('--'))) t.ok(existsSync(join(root, path)), `the build copies ${path}, which exists`);
  }

  const user = runtimeStage.filter((i) => i.keyword === 'USER').at(-1)?.args;
  t.ok(user && user !== 'root' && user !== '0', `runs as a non-root user (${user})`);
  const entrypoint = JSON.parse(runtimeStage.find((i) => i.keyword === 'ENTRYPOINT')?.args ?? 'null') as string[] | null;
  t.match(entrypoint?.[0], /tini$/, 'tini is PID 1: it forwards signals and reaps children');
  t.ok(runtimeStage.some((i) => i.keyword === 'RUN' && /install .*\btini\b/.test(i.args)), 'tini is installed');
  const cmd = runtimeStage.find((i) => i.keyword === 'CMD')?.args ?? '';
  t.same(JSON.parse(cmd), ['node', 'dist/server.js'], 'exec-form CMD: node itself, no shell between tini and the service');
  const cache = runtimeStage.find((i) => i.keyword === 'ENV' && /NODE_COMPILE_CACHE=/.test(i.args));
  t.ok(cache, 'V8 compile cache on (NODE_COMPILE_CACHE)');
  const userAt = runtimeStage.findIndex((i) => i.keyword === 'USER');
  const warm = runtimeStage.findIndex((i) => i.keyword === 'RUN' && /import\('\/app\/dist\/server\.js'\)/.test(i.args));
  t.ok(warm > userAt && userAt >= 0, 'the cache is filled at build time, as the user the service runs as');
  const health = runtimeStage.find((i) => i.keyword === 'HEALTHCHECK')?.args ?? '';
  t.match(health, /\/readyz/, 'the health check asks /readyz');
  t.match(health, /CMD \[/, 'in exec form');
});

t.test("Dockerfile: its ENV settings are the service's and load", async (t) => {
  const env = Object.assign({}, ...dockerfile.filter((i) => i.keyword === 'ENV').map((i) => envOf(i.args))) as Record<string, string>;
  const nodes = new Set(['NODE_ENV', 'NODE_COMPILE_CACHE']); // Node's own
  for (const name of Object.keys(env).filter((n) => !nodes.has(n))) t.ok(known.has(name), `${name} is a setting of src/config.ts`);
  t.equal(env.HOST, '0.0.0.0', 'listens on every interface in the container');
  const config = loadConfig({ ...env, DATA_DIR: t.testdirName, EVENTSTORE_CONNECTION_STRING: 'esdb://kurrentdb:2113?tls=false' });
  t.equal(config.http.host, '0.0.0.0');
  t.ok(readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').includes('node_modules'), '.dockerignore keeps the host node_modules out');
});

t.test('docker-compose.yml: KurrentDB 26.0 LTS, health-gated, and the service settings load', async (t) => {
  const compose = parse(readFileSync(join(root, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { image?: string; build?: unknown; environment?: Record<string, string | number>; healthcheck?: { test?: unknown }; depends_on?: Record<string, { condition?: string }>; profiles?: string[]; stop_grace_period?: string }>;
  };
  const { kurrentdb, ledger, postgres } = compose.services;
  t.match(kurrentdb?.image, /^docker\.kurrent\.io\/kurrent-lts\/kurrentdb:26\.0(\.\d+)?$/, 'KurrentDB 26.0 LTS from Kurrent\'s registry');
  t.ok(kurrentdb?.healthcheck?.test, 'KurrentDB has a health check');
  t.equal(ledger?.build, '.', 'the service is built from the Dockerfile');
  t.equal(ledger?.depends_on?.kurrentdb?.condition, 'service_healthy', 'the service starts once KurrentDB is healthy');
  t.same(postgres?.profiles, ['postgres'], 'PostgreSQL only with --profile postgres');

  const env = Object.fromEntries(Object.entries(ledger?.environment ?? {}).map(([k, v]) => [k, String(v)]));
  for (const name of Object.keys(env)) t.ok(known.has(name), `${name} is a setting of src/config.ts`);
  const config = loadConfig({ ...env, DATA_DIR: t.testdirName });
  t.equal(config.store.kind, 'eventstoredb', 'the service uses KurrentDB');
  t.match(config.store.kind === 'eventstoredb' ? config.store.connectionString : '', /^esdb:\/\/kurrentdb:2113\b/, 'pointed at the kurrentdb service');
  const grace = Number(/^(\d+)s$/.exec(ledger?.stop_grace_period ?? '')?.[1]) * 1000;
  t.ok(grace > config.http.shutdownGraceMs, `docker waits longer (${grace} ms) than the service's grace period (${config.http.shutdownGraceMs} ms) before SIGKILL`);
});
