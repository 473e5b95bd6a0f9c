import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';
import { tempDir } from './support/temp.js';

t.test('defaults: embedded SQLite under ./data, port 3000, info logs', async (t) => {
  const dir = tempDir(t);
  const c = loadConfig({ DATA_DIR: dir });
  t.equal(c.port, 3000);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.logLevel, 'info');
  t.same(c.store, { kind: 'sqlite', dataDir: dir, path: join(dir, 'events.db'), pollIntervalMs: 250 });
});

t.test('EVENTSTORE_CONNECTION_STRING selects EventStoreDB', async (t) => {
  const c = loadConfig({ EVENTSTORE_CONNECTION_STRING: 'esdb://localhost:2113?tls=false' });
  t.same(c.store, { kind: 'eventstoredb', connectionString: 'esdb://localhost:2113?tls=false' });
  t.equal(loadConfig({ EVENTSTORE_CONNECTION_STRING: 'esdb://x:2113', EVENT_STORE: 'sqlite', DATA_DIR: tempDir(t) }).store.kind, 'sqlite', 'EVENT_STORE wins');
});

const bad: Array<[string, NodeJS.ProcessEnv, RegExp]> = [
  ['unknown store kind', { EVENT_STORE: 'postgres' }, /^EVENT_STORE: must be 'sqlite' .* \(got "postgres"\)$/],
  ['eventstoredb without a connection string', { EVENT_STORE: 'eventstoredb' }, /^EVENTSTORE_CONNECTION_STRING: is required/],
  ['malformed connection string', { EVENTSTORE_CONNECTION_STRING: 'localhost:2113' }, /^EVENTSTORE_CONNECTION_STRING: is not an EventStoreDB connection string/],
  ['port not a number', { PORT: 'eighty' }, /^PORT: must be a whole number/],
  ['port out of range', { PORT: '70000' }, /^PORT: must be a whole number/],
  ['log level', { LOG_LEVEL: 'loud' }, /^LOG_LEVEL: must be one of/],
];
for (const [name, env, message] of bad) {
  t.test(`bad configuration stops with one line naming the variable: ${name}`, async (t) => {
    const err = (() => {
      try {
        loadConfig({ DATA_DIR: tempDir(t), ...env });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    t.type(err, ConfigError);
    t.match((err as Error).message, message);
    t.notMatch((err as Error).message, /\n/, 'one line');
  });
}

t.test('an unusable DATA_DIR names DATA_DIR', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  t.throws(() => loadConfig({ DATA_DIR: file }), { name: 'ConfigError', message: /^DATA_DIR: .* is not a directory|^DATA_DIR: cannot create/ });
  t.throws(() => loadConfig({ DATA_DIR: join(file, 'below') }), { name: 'ConfigError', message: /^DATA_DIR: cannot create .*ENOTDIR/ });
});

t.test('connection strings with credentials are redacted in errors', async (t) => {
  t.throws(() => loadConfig({ EVENTSTORE_CONNECTION_STRING: 'http://admin:changeit@host:2113' }), { message: /\/\/\*\*\*@host/ });
});
