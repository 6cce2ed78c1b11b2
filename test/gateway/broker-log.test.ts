import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { brokerLogger, logPresence } from '../../gateway/broker-log.ts';
import type { Fleet } from '../../gateway/fleet.ts';
import { createLogger } from '../../gateway/log.ts';

function capture(): { lines: Record<string, unknown>[]; log: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  return { lines, log: createLogger({ level: 'debug', format: 'json', destination }) };
}

describe('structured broker and presence logs', () => {
  it('gives each broker line a level and an event name', () => {
    const { lines, log } = capture();
    const broker = brokerLogger(log);
    broker('broker: listening on mqtt://127.0.0.1:1883 (max packet 131072 bytes, max clients 10000, authentication required)');
    broker('broker: listening on 0.0.0.0 without authentication: any client that reaches it can connect (set broker.devicesFile)');
    broker('broker: refused dev-1 from 127.0.0.1:5000: bad-password (CONNACK 4)');
    broker('broker: refused dev-2 from 127.0.0.1:5001: 10 clients connected');
    broker('broker: listener error: boom');
    broker('broker: closed');
    broker('broker: something new');
    assert.deepEqual(lines.map((l) => [l.level, l.event]), [
      [30, 'broker.listening'], [40, 'broker.no-auth'], [40, 'broker.auth-failed'], [40, 'broker.refused'], [50, 'broker.error'], [30, 'broker.closed'], [40, 'broker.other'],
    ]);
    assert.equal(lines[0]!.url, 'mqtt://127.0.0.1:1883');
    assert.deepEqual([lines[2]!.client, lines[2]!.remote], ['dev-1', '127.0.0.1:5000']);
    assert.equal(lines[3]!.reason, 'client-cap');
  });

  it('logs a device online once (first status or reconnect) and offline when it leaves', () => {
    const { lines, log } = capture();
    const fleet = new EventEmitter() as unknown as Fleet;
    logPresence(fleet, log);
    const d = { id: 'dev-1', hw: 'sensor-v1', version: '1.0.0' };
    fleet.emit('status', d as never);
    fleet.emit('status', d as never);
    fleet.emit('offline', d as never);
    fleet.emit('online', d as never);
    assert.deepEqual(lines.map((l) => [l.level, l.event, l.device]), [
      [30, 'device.online', 'dev-1'], [30, 'device.offline', 'dev-1'], [30, 'device.online', 'dev-1'],
    ]);
  });
});
