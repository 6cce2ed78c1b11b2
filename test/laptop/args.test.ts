import assert from 'node:assert/strict';
import { parseArgs, type ParsedArgs } from '../../laptop/args.ts';
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

  it('--help exits 0; a missing --port is a usage error', () => {
    assert.deepEqual(parse('--help').parsed, { kind: 'exit', code: 0 });
    const { parsed, err } = parse('img.bin');
    assert.deepEqual(parsed, { kind: 'exit', code: 2 });
    assert.match(err, /--port/);
  });

  it('the settings are frozen, nested ranges included', () => {
    assert.ok(Object.isFrozen(laptopSettings));
    assert.ok(Object.isFrozen(laptopSettings.flagRanges));
    assert.ok(Object.isFrozen(laptopSettings.flagRanges.reconnectTimeout));
  });
});
