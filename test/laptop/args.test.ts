import assert from 'node:assert/strict';
import { campaignOptions, parseArgs, type ParsedArgs } from '../../laptop/args.ts';
import { rtsFor } from '../../laptop/client.ts';
import type { Manifest } from '../../protocol/manifest.ts';
import { decodeLaptopMessage, encodeUplinkMessage } from '../../protocol/uplink.ts';
import { laptopSettings } from '../../laptop/settings.ts';

/** Parse with commander's output captured; usage errors come back as text, not on the terminal. */
function parse(...argv: string[]): { parsed: ParsedArgs; err: string } {
  let err = '';
  const parsed = parseArgs(argv, { writeOut: () => undefined, writeErr: (s) => { err += s; } });
  return { parsed, err };
}

function opts(p: ParsedArgs): Extract<ParsedArgs, { kind: 'run' }>['opts'] {
  assert.equal(p.kind, 'run');
  return (p as Extract<ParsedArgs, { kind: 'run' }>).opts;
}

describe('laptop/args: fwpush flags', () => {
  it('--reconnect-timeout defaults to the settings module (300 s) and takes whole seconds, 0 included', () => {
    assert.equal(laptopSettings.reconnectTimeoutMs, 300_000);
    assert.equal(opts(parse('--port', '/dev/ttyX', 'img.bin').parsed).reconnectTimeout, 300);
    assert.equal(opts(parse('--port', '/dev/ttyX', 'img.bin', '--reconnect-timeout', '0').parsed).reconnectTimeout, 0);
    assert.equal(opts(parse('--port', '/dev/ttyX', 'status', '--reconnect-timeout', '45').parsed).reconnectTimeout, 45);
  });

  it('--tech-key <file> (and -K) names the technician key file; absent by default', () => {
    assert.equal(opts(parse('--port', '/dev/ttyX', 'img.bin').parsed).techKey, undefined);
    assert.equal(opts(parse('--port', '/dev/ttyX', '--tech-key', 'alice.key', 'img.bin').parsed).techKey, 'alice.key');
    assert.equal(opts(parse('-P', '/dev/ttyX', '-K', 'alice.key', 'img.bin').parsed).techKey, 'alice.key');
  });

  for (const bad of ['abc', '-1', '1.5', '86401', '']) {
    it(`--reconnect-timeout "${bad}" is a usage error (exit 2) naming the flag`, () => {
      const { parsed, err } = parse('--port', '/dev/ttyX', 'img.bin', '--reconnect-timeout', bad);
      assert.deepEqual(parsed, { kind: 'exit', code: 2 });
      assert.match(err, /--reconnect-timeout/);
      assert.match(err, /whole number from 0 to 86400/);
    });
  }

  it('--reconnect-timeout without a value is a usage error naming the flag', () => {
    const { parsed, err } = parse('--port', '/dev/ttyX', 'img.bin', '--reconnect-timeout');
    assert.deepEqual(parsed, { kind: 'exit', code: 2 });
    assert.match(err, /--reconnect-timeout/);
  });

  it('the other numeric flags keep their defaults and ranges from the settings module', () => {
    const o = opts(parse('--port', '/dev/ttyX', 'img.bin').parsed);
    assert.deepEqual([o.timeout, o.baud, o.frame, o.window, o.chunk],
      [laptopSettings.idleTimeoutMs / 1000, laptopSettings.baudRate, laptopSettings.maxFrame, laptopSettings.window, laptopSettings.deviceChunk]);
    const { parsed, err } = parse('--port', '/dev/ttyX', 'img.bin', '--timeout', '0');
    assert.deepEqual(parsed, { kind: 'exit', code: 2 });
    assert.match(err, /--timeout must be a whole number from 1 to 86400/);
  });

  it('--help exits 0; --port may be left out (laptop/defaults.ts fills it in); a missing image is a usage error', () => {
    assert.deepEqual(parse('--help').parsed, { kind: 'exit', code: 0 });
    assert.equal(opts(parse('img.bin').parsed).port, undefined);
    const { parsed, err } = parse('--port', '/dev/ttyX');
    assert.deepEqual(parsed, { kind: 'exit', code: 2 });
    assert.match(err, /missing required argument.*\(see fwpush --help\)/);
  });

  describe('campaign policy flags (docs/protocol.md §7.3.5)', () => {
    const run = (...flags: string[]): ReturnType<typeof campaignOptions> => campaignOptions(opts(parse('--port', '/dev/ttyX', 'img.bin', ...flags).parsed));

    it('--now, --in-window, --allow-downgrade and --force become rts.policy, downgrade and force', () => {
      assert.deepEqual(run('--now'), { policy: 'now' });
      assert.deepEqual(run('--in-window'), { policy: 'window' });
      assert.deepEqual(run('--in-window', '--allow-downgrade', '--force'), { policy: 'window', downgrade: true, force: true });
      assert.deepEqual(run('--allow-downgrade'), { downgrade: true });
      assert.deepEqual(run('--force'), { force: true });
    });

    it('none given: the rts carries none of them, so the gateway applies its defaults', () => {
      assert.deepEqual(run(), {});
      const manifest: Manifest = { name: 'sensor-fw', version: '1.2.0', hw: ['sensor-v1'], size: 200, crc32: 1, sha256: 'ab'.repeat(32), chunk: 64 };
      assert.deepEqual(Object.keys(rtsFor(manifest, run())), ['t', 'manifest']);
      assert.deepEqual(Object.keys(decodeLaptopMessage(encodeUplinkMessage(rtsFor(manifest, run('--now', '--force'))))).sort(), ['force', 'manifest', 'policy', 't']);
      assert.deepEqual(rtsFor(manifest, { policy: undefined, downgrade: undefined }), { t: 'rts', manifest }, 'an undefined option is left out, never sent');
    });

    it('--now with --in-window is a usage error (exit 2) naming both', () => {
      for (const order of [['--now', '--in-window'], ['--in-window', '--now']]) {
        const { parsed, err } = parse('--port', '/dev/ttyX', 'img.bin', ...order);
        assert.deepEqual(parsed, { kind: 'exit', code: 2 });
        assert.match(err.split('\n')[0]!, /cannot be used with/);
        assert.match(err.split('\n')[0]!, /'--now'/);
        assert.match(err.split('\n')[0]!, /'--in-window'/);
      }
    });

    it('--help documents the four flags and the default policy', () => {
      let out = '';
      assert.deepEqual(parseArgs(['--help'], { writeOut: (s) => { out += s; }, writeErr: () => undefined }), { kind: 'exit', code: 0 });
      for (const flag of ['--now', '--in-window', '--allow-downgrade', '--force']) assert.match(out, new RegExp(`^  ${flag} `, 'm'), flag);
      assert.match(out, /maintenance window/);
      assert.match(out, /with neither --now nor --in-window the gateway decides/);
    });

    it('--window stays the link\'s ARQ window; a word after it is a usage error that points to --in-window', () => {
      assert.equal(opts(parse('--port', '/dev/ttyX', 'img.bin', '--window', '8').parsed).window, 8);
      const { parsed, err } = parse('--port', '/dev/ttyX', '--window', 'img.bin');
      assert.deepEqual(parsed, { kind: 'exit', code: 2 });
      assert.match(err, /--window must be a whole number from 1 to 64, got "img\.bin" \(it is the link's ARQ window; to wait for a maintenance window, use --in-window\)/);
    });
  });

  it('the settings are frozen, nested ranges included', () => {
    assert.ok(Object.isFrozen(laptopSettings));
    assert.ok(Object.isFrozen(laptopSettings.flagRanges));
    assert.ok(Object.isFrozen(laptopSettings.flagRanges.reconnectTimeout));
  });
});
