import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, mergeConfig, parseConfig } from '../../gateway/config.ts';
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

  describe('maintenance windows', () => {
    const ok = { cron: '0 2 * * *', durationMin: 120, timeZone: 'Europe/Berlin' };

    it('accepts a list and defaults to none', () => {
      assert.deepEqual(parseConfig({}).windows, { list: [], clockCheckMs: 5000, clockJumpMs: 2000 });
      assert.deepEqual(parseConfig({ windows: { list: [ok, { ...ok, cron: '0 30 1 * * 6', timeZone: 'UTC' }] } }).windows.list[1],
        { cron: '0 30 1 * * 6', durationMin: 120, timeZone: 'UTC' });
    });

    it('names the window, the field and the problem for each kind of error', () => {
      const cases: [unknown, RegExp][] = [
        [{ cron: '61 * * * *' }, /windows\.list\.0\.cron: "61 \* \* \* \*" is not a valid cron expression \(minute: 61 /],
        [{ cron: '0 25 * * *' }, /windows\.list\.0\.cron: "0 25 \* \* \*" is not a valid cron expression \(hour: 25 /],
        [{ cron: '0 2 * *' }, /windows\.list\.0\.cron: .*expected 5 or 6 fields but got 4/],
        [{ cron: '0 2 L * *' }, /windows\.list\.0\.cron: "0 2 L \* \*": L is not supported for maintenance windows/],
        [{ durationMin: -5 }, /windows\.list\.0\.durationMin: must be greater than 0/],
        [{ durationMin: 0 }, /windows\.list\.0\.durationMin: must be greater than 0/],
        [{ durationMin: 1.5 }, /windows\.list\.0\.durationMin: must be a whole number of minutes/],
        [{ durationMin: 10_081 }, /windows\.list\.0\.durationMin: must be at most 10080 \(7 days\)/],
        [{ timeZone: 'Mars/Olympus' }, /windows\.list\.0\.timeZone: unknown time zone "Mars\/Olympus"/],
        [{ timeZone: undefined }, /windows\.list\.0\.timeZone: Invalid input/],
        [{ duration: '2h' }, /windows\.list\.0: Unrecognized key: "duration"/],
      ];
      for (const [change, pattern] of cases) {
        assert.throws(() => parseConfig({ windows: { list: [{ ...ok, ...change as object }] } }, 'site.json'), (err: unknown) => {
          assert.ok(isFwError(err, 'E_CONFIG'));
          assert.match((err as Error).message, /^site\.json: /);
          assert.match((err as Error).message, pattern);
          return true;
        });
      }
      // The index names which window.
      assert.throws(() => parseConfig({ windows: { list: [ok, { ...ok, timeZone: 'Mars/Olympus' }] } }),
        /windows\.list\.1\.timeZone: unknown time zone "Mars\/Olympus"/);
    });

    it('a config file with a bad window: the message names the file, the field and the problem', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'fwgate-config-'));
      try {
        const file = join(dir, 'site.json');
        await writeFile(file, JSON.stringify({ windows: { list: [ok, { ...ok, cron: '0 2 * * 8' }] } }));
        // As gateway/cli.ts does it.
        const load = async (): Promise<unknown> => parseConfig(mergeConfig(await loadConfigFile(file), {}), `config (${file} + flags)`);
        await assert.rejects(load, (err: unknown) => {
          assert.ok(isFwError(err, 'E_CONFIG'));
          assert.ok((err as Error).message.startsWith(`config (${file} + flags): windows.list.1.cron: "0 2 * * 8" is not a valid cron expression (dayOfWeek: `), (err as Error).message);
          return true;
        });
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  it('lays flags over a file without losing the file\'s other keys', () => {
    const merged = mergeConfig({ broker: { host: '0.0.0.0', port: 1884 }, rollout: { concurrency: 4 } }, { broker: { port: 2000, host: undefined } });
    assert.deepEqual(merged, { broker: { host: '0.0.0.0', port: 2000 }, rollout: { concurrency: 4 } });
  });
});
