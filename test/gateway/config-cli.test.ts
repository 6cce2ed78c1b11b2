import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configJsonSchema } from '../../gateway/config-cli.ts';
import { generateSigningKey } from '../../protocol/signature.ts';
import { runEntry } from '../helpers/run-entry.ts';

describe('fwgate config schema / check / print, --technician-key', function () {
  this.timeout(60_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fwgate-config-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('the committed docs/config.schema.json is the schema generated from the zod schema (regenerate: fwgate config schema > docs/config.schema.json)', async () => {
    const committed = JSON.parse(await readFile(new URL('../../docs/config.schema.json', import.meta.url), 'utf8')) as unknown;
    assert.deepEqual(committed, JSON.parse(JSON.stringify(configJsonSchema())));
    const schema = configJsonSchema() as { properties: Record<string, { properties?: Record<string, { default?: unknown }> }> };
    assert.equal(schema.properties.http?.properties?.host?.default, '127.0.0.1');
    assert.equal(schema.properties.rollout?.properties?.concurrency?.default, 8);
  });

  it('check: 0 for a valid file, 2 naming the field for a bad one and for a device list that cannot be read', async () => {
    await writeFile(join(dir, 'good.json'), JSON.stringify({ broker: { port: 1884 }, http: { port: 9100 } }));
    await writeFile(join(dir, 'bad.json'), JSON.stringify({ rollout: { concurency: 3 } }));
    await writeFile(join(dir, 'nolist.json'), JSON.stringify({ broker: { devicesFile: join(dir, 'missing.json') } }));
    const good = await runEntry('gateway/cli.ts', ['config', 'check', join(dir, 'good.json')]);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /good\.json: valid/);
    const bad = await runEntry('gateway/cli.ts', ['config', 'check', join(dir, 'bad.json')]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /rollout: Unrecognized key: "concurency"/);
    const nolist = await runEntry('gateway/cli.ts', ['config', 'check', join(dir, 'nolist.json')]);
    assert.equal(nolist.code, 2);
    assert.match(nolist.stderr, /cannot read device list .*missing\.json/);
  });

  it('print: defaults + file + flags, the token hidden; --technician-key adds to uplink.technicianKeys', async () => {
    const key = generateSigningKey();
    await writeFile(join(dir, 'tech.pub'), key.publicKeyPem);
    await writeFile(join(dir, 'cfg.json'), JSON.stringify({ broker: { port: 1884 }, http: { token: 'a-secret-token-0123456789' } }));
    const r = await runEntry('gateway/cli.ts', ['--config', join(dir, 'cfg.json'), '--http-port', '9100', '--technician-key', join(dir, 'tech.pub'), 'config', 'print']);
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(r.stdout) as { broker: { port: number; host: string }; http: { port: number; token: string }; uplink: { technicianKeys: { publicKey: string }[] } };
    assert.deepEqual([cfg.broker.port, cfg.broker.host, cfg.http.port, cfg.http.token], [1884, '127.0.0.1', 9100, '(set)']);
    assert.deepEqual(cfg.uplink.technicianKeys, [{ publicKey: key.publicKeyPem }]);
    assert.ok(!r.stdout.includes('a-secret-token'));
    const missing = await runEntry('gateway/cli.ts', ['--technician-key', join(dir, 'nope.pub'), 'config', 'print']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /cannot read technician key .*nope\.pub/);
  });
});
