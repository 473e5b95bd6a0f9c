/**
 * verifyChains over a real SQLite file: stores written before the chain existed, bounded streams, a stream whose
 * beginning was deleted, progress, anchors; and the canonical JSON the hashes are computed over.
 */
import { join } from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import { chainHeads, verifyChains } from '../../src/application/audit/verify-chains.js';
import { GENESIS_HASH, canonicalJson, chainHash } from '../../src/eventstore/chain-hash.js';
import { openSqliteStore } from '../../src/eventstore/sqlite.store.js';
import { tempDir } from '../support/temp.js';

const ev = (type: string, n: number) => ({ type, data: { n }, metadata: { actor: 'test', correlationId: 'c', causationId: 'c' } });

t.test('canonical JSON: sorted keys, no whitespace, what JSON.stringify leaves out left out', async (t) => {
  t.equal(canonicalJson({ b: 1, a: [3, undefined, { d: 'x', c: null }], e: undefined }), '{"a":[3,null,{"c":null,"d":"x"}],"b":1}');
  t.equal(canonicalJson({ when: new Date('2026-01-02T03:04:05.000Z') }), '{"when":"2026-01-02T03:04:05.000Z"}', 'toJSON is used');
  t.equal(canonicalJson({ '10': 1, '9': 2, B: 3, a: 4 }), '{"10":1,"9":2,"B":3,"a":4}', 'keys in UTF-16 code-unit order');
  t.equal(canonicalJson('é\n'), JSON.stringify('é\n'));
  t.equal(canonicalJson([1.5, -0, 1e21, Number.NaN]), '[1.5,0,1e+21,null]');
  t.throws(() => canonicalJson({ n: 1n }), /bigint/);
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  t.throws(() => canonicalJson(cyclic), /cyclic/);
  const value = { z: { y: [1, 'two', true] }, a: 'b' };
  t.equal(canonicalJson(JSON.parse(JSON.stringify(value))), canonicalJson(value), 'the same after a JSON round trip');
  const content = { id: 'e', streamId: 's-1', revision: 0n, type: 'T', data: { n: 1 }, metadata: { actor: 'x', chainHash: 'ignored' } };
  t.equal(chainHash(GENESIS_HASH, content), chainHash(GENESIS_HASH, { ...content, metadata: { actor: 'x' } }), 'the hash does not cover chainHash itself');
  t.not(chainHash(GENESIS_HASH, content), chainHash(GENESIS_HASH, { ...content, revision: 1n }), 'it covers the revision');
});

t.test('a store written before the chain: "unchained before revision N", not tampered', async (t) => {
  const path = join(tempDir(t, 'legacy'), 'events.db');
  const store = openSqliteStore({ path });
  await store.appendToStream('subscription-old', [ev('A', 1)]);
  await store.appendToStream('subscription-older', [ev('A', 1)]);
  await store.close();
  // What an older version wrote: the same rows without chainHash.
  const raw = new Database(path);
  raw.prepare("UPDATE events SET metadata = json_remove(metadata, '$.chainHash')").run();
  raw.prepare("INSERT INTO events (event_id, stream_id, category, revision, type, data, metadata, recorded_at) VALUES ('aaaaaaaa-0000-4000-8000-000000000001', 'subscription-old', 'subscription-', 1, 'B', '{}', '{}', '2026-01-01T00:00:00.000Z')").run();
  raw.prepare("UPDATE streams SET revision = 1 WHERE stream_id = 'subscription-old'").run();
  raw.close();

  const again = openSqliteStore({ path });
  t.teardown(() => again.close());
  await again.appendToStream('subscription-old', [ev('C', 3), ev('D', 4)], { expectedRevision: 1n });
  await again.appendToStream('subscription-new', [ev('A', 1)]);
  const seen: number[] = [];
  const report = await verifyChains(again, { onProgress: (n) => seen.push(n) });
  t.ok(report.ok, 'nothing is called tampered');
  t.same(report.problems, []);
  t.same(
    [...report.unchained].sort((a, b) => a.streamId.localeCompare(b.streamId)),
    [{ streamId: 'subscription-old', beforeRevision: '2' }, { streamId: 'subscription-older', beforeRevision: '1' }],
    'each stream with events from before the chain, up to where its chain starts',
  );
  t.equal(report.unchainedCount, 2);
  t.equal(report.verified, 3, 'the chained events are verified (the first one after old events from the genesis value)');
  t.equal(seen.at(-1), report.events, 'progress ends at the number of events checked');

  const stripped = new Database(path);
  stripped.prepare("UPDATE events SET metadata = json_remove(metadata, '$.chainHash') WHERE stream_id = 'subscription-old' AND revision = 3").run();
  stripped.close();
  const after = await verifyChains(again, { streamId: 'subscription-old' });
  t.same(after.problems.map((p) => [p.kind, p.revision]), [['unchained', '3']], 'a hash stripped after the chain began is a problem');
});

t.test("a stream whose first events were deleted is not mistaken for a bounded one", async (t) => {
  const path = join(tempDir(t, 'head'), 'events.db');
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  await store.appendToStream('subscription-a', [1, 2, 3].map((n) => ev('E', n)));
  for (let n = 1; n <= 3; n++) await store.appendToStream('checkpoint-x', [ev('Checkpoint', n)], { keepLast: 1 });
  const raw = new Database(path);
  raw.prepare("DELETE FROM events WHERE stream_id = 'subscription-a' AND revision = 0").run();
  raw.close();
  const report = await verifyChains(store);
  t.same(report.problems.map((p) => [p.kind, p.streamId, p.revision]), [['removed', 'subscription-a', '0']]);
  t.equal(report.pruned, 1, 'the checkpoint stream is bounded by design');
});

t.test('anchors: a tail rewritten with fresh hashes shows at the anchored revision', async (t) => {
  const path = join(tempDir(t, 'anchors'), 'events.db');
  const store = openSqliteStore({ path });
  t.teardown(() => store.close());
  await store.appendToStream('subscription-a', [1, 2].map((n) => ev('E', n)));
  await store.appendToStream('subscription-b', [ev('E', 1)]);
  const heads = await chainHeads(store);
  t.same(heads.map((h) => [h.streamId, h.revision]), [['subscription-a', '1'], ['subscription-b', '0']]);
  t.same(await chainHeads(store, { streamPrefixes: ['subscription-b'] }).then((h) => h.map((x) => x.streamId)), ['subscription-b']);

  // Someone with write access rewrites revision 1 and recomputes its hash: the chain alone is consistent again.
  const [first] = await store.readStream('subscription-a');
  const forged = { ...ev('E', 99).metadata };
  const row = { id: (await store.readStream('subscription-a'))[1]?.id ?? '', streamId: 'subscription-a', revision: 1n, type: 'E', data: { n: 99 }, metadata: forged };
  const hash = chainHash(String(first?.metadata.chainHash), row);
  const raw = new Database(path);
  raw.prepare("UPDATE events SET data = ?, metadata = ? WHERE stream_id = 'subscription-a' AND revision = 1").run(JSON.stringify({ n: 99 }), JSON.stringify({ ...forged, chainHash: hash }));
  raw.close();
  t.ok((await verifyChains(store)).ok, 'the chain alone cannot see a rewrite with recomputed hashes');
  const report = await verifyChains(store, { anchors: heads });
  t.same(report.problems.map((p) => [p.kind, p.streamId, p.revision]), [['altered', 'subscription-a', '1']], 'the anchor can');
  t.equal(report.anchors, 2);
  t.equal(report.anchorsMatched, 1);
  t.equal((await verifyChains(store, { streamId: 'subscription-b', anchors: heads })).anchors, 1, 'one stream: only its anchor');
});
