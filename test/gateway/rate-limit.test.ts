import assert from 'node:assert/strict';
import { ConnectRateLimiter, LogThrottle, PUBLISH_DROP_WINDOW_MS, PublishRateLimiter } from '../../gateway/rate-limit.ts';

/** The broker's rate limits in isolation, on a fake clock (issue 18 item 7, and the connect rate). */
describe('gateway/rate-limit', () => {
  const clock = { now: 0 };
  beforeEach(() => {
    clock.now = 1_000_000;
  });

  describe('PublishRateLimiter', () => {
    it('a burst, then one per 1000/perSec ms; drops counted towards a disconnect within the window', () => {
      const r = new PublishRateLimiter(10, 3, 2, () => clock.now);
      assert.deepEqual([r.take('a'), r.take('a'), r.take('a')], ['ok', 'ok', 'ok']);
      assert.equal(r.take('a'), 'drop');
      clock.now += 99;
      assert.equal(r.take('a'), 'drop', 'not a whole token yet');
      clock.now += 1;
      assert.equal(r.take('a'), 'ok');
      assert.equal(r.take('a'), 'disconnect', 'the third drop within the window is past the limit of 2');
      assert.equal(r.take('b'), 'ok', 'each client has its own bucket');
    });

    it('drops older than the window are forgotten; the bucket never holds more than the burst', () => {
      const r = new PublishRateLimiter(10, 2, 2, () => clock.now);
      r.take('a');
      r.take('a');
      assert.equal(r.take('a'), 'drop');
      assert.equal(r.take('a'), 'drop');
      clock.now += PUBLISH_DROP_WINDOW_MS + 1;
      assert.deepEqual([r.take('a'), r.take('a'), r.take('a')], ['ok', 'ok', 'drop'], 'refilled to the burst of 2 only; a new window counts from 1');
      assert.equal(r.take('a'), 'drop');
      assert.equal(r.take('a'), 'disconnect');
      const edge = new PublishRateLimiter(10, 1, 1, () => clock.now);
      edge.take('e');
      assert.equal(edge.take('e'), 'drop');
      clock.now += PUBLISH_DROP_WINDOW_MS;
      edge.take('e');
      assert.equal(edge.take('e'), 'disconnect', 'at exactly the window the old drops still count');
    });

    it('forget() drops a client\'s state; perSec 0 is off', () => {
      const r = new PublishRateLimiter(1, 1, 5, () => clock.now);
      r.take('a');
      assert.equal(r.take('a'), 'drop');
      assert.equal(r.tracked, 1);
      r.forget('a');
      assert.equal(r.tracked, 0);
      assert.equal(r.take('a'), 'ok');
      const off = new PublishRateLimiter(0, 1, 1, () => clock.now);
      for (let i = 0; i < 100; i++) assert.equal(off.take('a'), 'ok');
      assert.equal(off.tracked, 0);
    });
  });

  describe('LogThrottle', () => {
    it('the first line, then at most one per interval with the count left out', () => {
      const t = new LogThrottle(1000, () => clock.now);
      const out: string[] = [];
      const log = (l: string): void => { out.push(l); };
      t.log('k', 'refused', log);
      t.log('k', 'refused', log);
      t.log('k', 'refused', log);
      t.log('other', 'refused other', log);
      clock.now += 999;
      t.log('k', 'refused', log);
      clock.now += 1;
      t.log('k', 'refused', log);
      t.log('k', 'refused', log);
      clock.now += 1000;
      t.log('k', 'refused', log);
      assert.deepEqual(out, ['refused', 'refused other', 'refused (and 3 more like it since the last such line)', 'refused (and 1 more like it since the last such line)']);
      assert.deepEqual(t.allow('new'), { log: true, suppressed: 0 });
      assert.deepEqual(t.allow('new'), { log: false, suppressed: 1 });
    });

    it('tracks at most maxKeys keys, forgetting the oldest', () => {
      const t = new LogThrottle(1000, () => clock.now, 2);
      t.allow('a');
      t.allow('b');
      t.allow('c');
      assert.equal(t.allow('a').log, true, 'a was forgotten');
      assert.equal(t.allow('c').log, false);
    });

    it('interval 0: every line', () => {
      const t = new LogThrottle(0, () => clock.now);
      assert.equal(t.allow('k').log, true);
      assert.equal(t.allow('k').log, true);
    });
  });

  describe('ConnectRateLimiter', () => {
    it('perMinute tokens, refilled over a minute; full buckets are forgotten after a minute; 0 is off', () => {
      const r = new ConnectRateLimiter(2, () => clock.now);
      assert.deepEqual([r.take('a'), r.take('a'), r.take('a')], [true, true, false]);
      clock.now += 29_999;
      assert.equal(r.take('a'), false);
      clock.now += 1;
      assert.equal(r.take('a'), true);
      assert.equal(r.tracked, 1);
      clock.now += 60_000;
      r.take('b');
      assert.equal(r.tracked, 1, 'a refilled completely and was forgotten');
      const off = new ConnectRateLimiter(0, () => clock.now);
      for (let i = 0; i < 10; i++) assert.equal(off.take('a'), true);
    });
  });
});
