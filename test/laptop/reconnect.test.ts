import assert from 'node:assert/strict';
import { FwError, isFwError } from '../../protocol/errors.ts';
import type { LinkNotice } from '../../laptop/notices.ts';
import { noticeText, noticeWriter } from '../../laptop/notices.ts';
import { Reconnecting, type Clock, type Lossy, type ReconnectOptions } from '../../laptop/reconnect.ts';

/** A connection whose link can be "lost" by the test. */
class FakeConn implements Lossy {
  lost: FwError | undefined;
  closed = false;
  constructor(readonly n: number) {}
  async close(): Promise<void> {
    this.closed = true;
  }
  pull(): FwError {
    this.lost = new FwError('E_LINK_CLOSED', 'serial port /dev/ttyT disconnected');
    return new FwError('E_LINK_CLOSED', 'link is closed');
  }
}

/** Time that passes only when slept (or when an open "takes" time). */
function fakeClock(): Clock & { t: number; sleeps: number[] } {
  const c = {
    t: 0,
    sleeps: [] as number[],
    now: () => c.t,
    sleep: async (ms: number) => {
      c.sleeps.push(ms);
      c.t += ms;
    },
  };
  return c;
}

function setup(o: Partial<ReconnectOptions<FakeConn>> & { failOpens?: number; openTakesMs?: number } = {}) {
  const clock = fakeClock();
  const notices: LinkNotice[] = [];
  const opened: FakeConn[] = [];
  const limits: number[] = [];
  let fails = o.failOpens ?? 0;
  const first = new FakeConn(0);
  const session = new Reconnecting<FakeConn>(first, {
    port: '/dev/ttyT', timeoutMs: 10_000, backoffMs: 250, backoffMaxMs: 2000, attemptTimeoutMs: 5000, clock,
    notify: (n) => notices.push(n),
    open: async (limitMs) => {
      limits.push(limitMs);
      clock.t += o.openTakesMs ?? 0;
      if (fails-- > 0) throw new FwError('E_LINK_CLOSED', 'cannot open serial port /dev/ttyT: ENOENT');
      const c = new FakeConn(opened.length + 1);
      opened.push(c);
      return c;
    },
    ...o,
  });
  return { clock, notices, opened, limits, first, session };
}

describe('laptop/reconnect: a push that outlives a lost link', () => {
  it('reopens with doubling, capped backoff, says so, and runs the step again on the new connection', async () => {
    const { clock, notices, opened, first, session } = setup({ failOpens: 5 });
    const calls: [number, boolean][] = [];
    const result = await session.run(() => 'upload', async (conn, again) => {
      calls.push([conn.n, again]);
      if (conn === first) throw first.pull();
      return 'done';
    });
    assert.equal(result, 'done');
    assert.deepEqual(calls, [[0, false], [1, true]]);
    assert.ok(first.closed, 'the lost connection is closed before reopening');
    assert.equal(opened.length, 1);
    assert.equal(session.current, opened[0]);
    assert.deepEqual(clock.sleeps, [250, 500, 1000, 2000, 2000]);
    assert.deepEqual(notices.map((n) => n.event), ['link-lost', 'reconnected']);
    assert.deepEqual(notices[0], {
      event: 'link-lost', port: '/dev/ttyT', phase: 'upload', code: 'E_LINK_CLOSED',
      message: 'serial port /dev/ttyT disconnected', reconnectTimeoutMs: 10_000,
    });
    assert.deepEqual(notices[1], { event: 'reconnected', port: '/dev/ttyT', phase: 'upload', attempts: 6, afterMs: 5750 });
  });

  it('gives up when the bound passes: E_LINK_CLOSED naming the port, how long it tried and how often', async () => {
    const { clock, notices, session } = setup({ failOpens: Infinity, timeoutMs: 3000 });
    let steps = 0;
    const err = await session.run(() => 'follow', async (conn) => {
      steps++;
      throw (conn as FakeConn).pull();
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(isFwError(err, 'E_LINK_CLOSED'), String(err));
    assert.match(err.message, /^lost the link to the gateway on \/dev\/ttyT and could not reconnect in 3\.0 s \(4 attempts, --reconnect-timeout 3 s; last: E_LINK_CLOSED: cannot open serial port/);
    assert.deepEqual(err.details, { port: '/dev/ttyT', phase: 'follow', attempts: 4, reconnectTimeoutMs: 3000 });
    assert.equal(steps, 1);
    assert.equal(clock.t, 3000, 'never sleeps past the bound');
    assert.deepEqual(notices.map((n) => n.event), ['link-lost']);
  });

  it('bounds each attempt by the time left', async () => {
    const { limits, session, first } = setup({ failOpens: 2, timeoutMs: 6000, openTakesMs: 1000 });
    await session.run(() => 'upload', async (conn) => {
      if (conn === first) throw first.pull();
    });
    // attempt 1 at t=0 (left 6000, capped at 5000), sleeps 250; attempt 2 at 1250; sleeps 500; attempt 3 at 2750
    assert.deepEqual(limits, [5000, 4750, 3250]);
  });

  it('--reconnect-timeout 0: the lost link ends the run at once, with the port named and the same code', async () => {
    const { notices, opened, first, session } = setup({ timeoutMs: 0 });
    const err = await session.run(() => 'upload', async () => {
      throw first.pull();
    }).then(() => undefined, (e: unknown) => e);
    assert.ok(isFwError(err, 'E_LINK_CLOSED'));
    assert.match(err.message, /on \/dev\/ttyT .*not reconnecting \(--reconnect-timeout 0\)/);
    assert.equal(opened.length, 0);
    assert.deepEqual(notices, []);
  });

  it('errors that are not a lost link pass through untouched, without reconnecting', async () => {
    const { opened, session } = setup();
    const refused = new FwError('E_UPLINK_STATE', 'gateway refused the upload (busy): campaign c-1 is still running');
    await assert.rejects(session.run(() => 'upload', async () => { throw refused; }), (e) => e === refused);
    assert.equal(opened.length, 0);
  });

  it('a reopen the gateway refuses (not a link error) ends the run with that error', async () => {
    const { first, session } = setup({
      open: async () => { throw new FwError('E_UPLINK_PROTOCOL', 'gateway speaks uplink protocol 2'); },
    });
    await assert.rejects(session.run(() => 'upload', async () => { throw first.pull(); }), (e) => isFwError(e, 'E_UPLINK_PROTOCOL'));
  });

  it('an aborted run (fwpush interrupted) does not reconnect', async () => {
    const ac = new AbortController();
    const { opened, first, session } = setup({ signal: ac.signal });
    ac.abort();
    const lostErr = first.pull();
    await assert.rejects(session.run(() => 'upload', async () => { throw lostErr; }), (e) => e === lostErr);
    assert.equal(opened.length, 0);
  });
});

describe('laptop/notices: what fwpush says about its link', () => {
  const lost: LinkNotice = { event: 'link-lost', port: '/dev/ttyUSB0', phase: 'upload', code: 'E_LINK_CLOSED', message: 'serial port /dev/ttyUSB0 failed: EIO', reconnectTimeoutMs: 300_000 };
  const back: LinkNotice = { event: 'reconnected', port: '/dev/ttyUSB0', phase: 'follow', attempts: 3, afterMs: 2400 };
  const resumed: LinkNotice = { event: 'upload-resumed', sha256: 'ab'.repeat(32), offset: 200 * 1024, size: 512 * 1024 };

  it('one plain line each, after the bars are taken down', () => {
    let out = '';
    let cleared = 0;
    const write = noticeWriter(false, { write: (s: string) => { out += s; } }, () => { cleared++; });
    write(lost);
    write(back);
    write(resumed);
    assert.equal(cleared, 3);
    assert.deepEqual(out.split('\n'), [
      'Link lost: gateway restarted or cable pulled (/dev/ttyUSB0: serial port /dev/ttyUSB0 failed: EIO); reconnecting for up to 5 min 00 s…',
      'Reconnected on /dev/ttyUSB0 after 2.4 s (3 attempts); following the campaign again',
      noticeText(resumed),
      '',
    ]);
    assert.match(noticeText(resumed), /^The gateway holds 200(\.0)? KiB of 512(\.0)? KiB; uploading the rest from there$/);
  });

  it('as JSON lines with an event key, like the renderer\'s', () => {
    let out = '';
    const write = noticeWriter(true, { write: (s: string) => { out += s; } }, () => assert.fail('no clearing in JSON'));
    write(lost);
    write(back);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines, [lost, back]);
  });
});
