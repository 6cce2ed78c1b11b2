import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { mergeConfig, parseConfig } from '../../gateway/config.ts';
import { isFwError } from '../../protocol/errors.ts';

/** Every leaf key of the defaults, dotted. */
function leafKeys(obj: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(obj).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? leafKeys(v as Record<string, unknown>, `${prefix}${k}.`) : [`${prefix}${k}`]);
}

describe('gateway config', () => {
  it('fills every default and documents every key in docs/operations.md', async () => {
    const cfg = parseConfig({});
    assert.equal(cfg.broker.port, 1883);
    assert.equal(cfg.rollout.concurrency, 8);
    const doc = await readFile(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    const keys = [...leafKeys(cfg as unknown as Record<string, unknown>), 'serial.path'];
    for (const k of keys) assert.ok(doc.includes(`\`${k}\``), `docs/operations.md lists ${k}`);
  });

  it('names the field and the problem for each kind of error', () => {
    const cases: [unknown, RegExp][] = [
      [{ broker: { port: 70000 } }, /broker\.port: .*65535/],
      [{ rollout: { concurency: 3 } }, /rollout: Unrecognized key: "concurency"/],
      [{ log: { level: 'loud' } }, /log\.level: /],
      [{ rollout: { ackTimeoutMs: -5 } }, /rollout\.ackTimeoutMs: /],
      [{ uplink: { maxFrame: 10 } }, /uplink\.maxFrame: /],
      [{ dataDir: 7 }, /dataDir: /],
    ];
    for (const [input, pattern] of cases) {
      assert.throws(() => parseConfig(input, 'site.json'), (err: unknown) => {
        assert.ok(isFwError(err, 'E_CONFIG'));
        assert.match((err as Error).message, /^site\.json: /);
        assert.match((err as Error).message, pattern);
        return true;
      });
    }
  });

  it('lays flags over a file without losing the file\'s other keys', () => {
    const merged = mergeConfig({ broker: { host: '0.0.0.0', port: 1884 }, rollout: { concurrency: 4 } }, { broker: { port: 2000, host: undefined } });
    assert.deepEqual(merged, { broker: { host: '0.0.0.0', port: 2000 }, rollout: { concurrency: 4 } });
  });
});
