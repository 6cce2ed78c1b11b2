import assert from 'node:assert/strict';
import { fmtIso, fmtLocal, fmtUntil } from '../../laptop/queued.ts';
import { EXIT, exitCodeFor, HumanRenderer, JsonRenderer, summarise, type TextOut } from '../../laptop/render.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';

/**
 * fwpush and campaigns that wait for a maintenance window (docs/protocol.md §7.4.5, §7.11;
 * docs/operations.md "fwpush"): the queued line, its JSON event, the summary and exit code 0,
 * and the `status` table. Times are fixed: the laptop's clock and time zone are injected.
 */

const SHA = '1901da1c9f699b48f6b2636e65cbf73abf99d0441ef67f5c540a42f7051dec6f';
const IMAGE = { name: 'sensor-fw', version: '1.2.0', sha256: SHA };
const NOW = Date.parse('2026-11-22T01:00:00Z');
const OPENS = Date.parse('2026-11-22T02:00:00Z');
const EXPIRES = Date.parse('2026-11-29T01:00:00Z');
const HELLO = { t: 'hello', proto: 1, role: 'gateway', agent: 'fwgate/0.1.0', maxFrame: 4096, window: 16, maxMessage: 1_048_576 } as const;

const QUEUED: GatewayUplinkMessage = {
  t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d',
  queued: { reason: 'waits for the next maintenance window', nextWindowAt: OPENS, expiresAt: EXPIRES }, supersedes: 'c-9f8e7d6c',
};

class FakePipe implements TextOut {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

function human(timeZone = 'Europe/Berlin'): { r: HumanRenderer; out: FakePipe; err: FakePipe } {
  const out = new FakePipe();
  const err = new FakePipe();
  return { r: new HumanRenderer({ out, err, now: () => NOW, timeZone }), out, err };
}

const queuedSummary = (): ReturnType<typeof summarise> =>
  summarise({ campaign: 'c-0a1b2c3d', image: IMAGE, order: undefined, results: [], durationMs: 2400, queued: { reason: 'waits for the next maintenance window', nextWindowAt: OPENS } });

describe('fwpush: campaigns queued for a maintenance window', () => {
  describe('times', () => {
    it('local time with the zone\'s offset, ISO 8601 UTC in whole seconds', () => {
      assert.equal(fmtLocal(OPENS, 'Europe/Berlin'), 'Sun 22 Nov 03:00 +01:00');
      assert.equal(fmtLocal(OPENS, 'UTC'), 'Sun 22 Nov 02:00 +00:00');
      assert.equal(fmtLocal(OPENS, 'Asia/Kathmandu'), 'Sun 22 Nov 07:45 +05:45');
      assert.equal(fmtLocal(Date.parse('2026-07-05T00:30:00Z'), 'America/New_York'), 'Sat 4 Jul 20:30 -04:00');
      assert.equal(fmtIso(OPENS), '2026-11-22T02:00:00Z');
      assert.equal(fmtIso(OPENS + 1500), '2026-11-22T02:00:01Z');
    });

    it('how long until then, coarse', () => {
      assert.equal(fmtUntil(1 * 3_600_000 + 58 * 60_000 + 40_000), 'in 1 h 58 min');
      assert.equal(fmtUntil(3_600_000), 'in 1 h 00 min');
      assert.equal(fmtUntil(12 * 60_000), 'in 12 min');
      assert.equal(fmtUntil(30_000), 'in less than a minute');
      assert.equal(fmtUntil(3 * 86_400_000 + 4 * 3_600_000 + 59 * 60_000), 'in 3 d 4 h');
      assert.equal(fmtUntil(0), 'now');
      assert.equal(fmtUntil(-5000), 'now');
    });
  });

  describe('a queued push', () => {
    it('plain text: the commit, one queued line with local time, UTC and how long, the expiry, the superseded campaign', () => {
      const { r, out } = human();
      r.connected(HELLO, '/dev/ttyUSB0');
      r.event(QUEUED);
      assert.deepEqual(out.text.trimEnd().split('\n').slice(1), [
        `Image verified and stored by the gateway (sha256 ${SHA.slice(0, 16)}…); campaign c-0a1b2c3d queued for a maintenance window`,
        'queued: campaign c-0a1b2c3d waits for the next maintenance window, opening Sun 22 Nov 03:00 +01:00 (2026-11-22T02:00:00Z, in 1 h 00 min)',
        'queued: campaign c-0a1b2c3d expires Sun 29 Nov 02:00 +01:00 (2026-11-29T01:00:00Z): a device it has not updated by then is left out',
        'supersedes: campaign c-9f8e7d6c (pending, not started, same hardware models) is replaced by c-0a1b2c3d and will not run',
      ]);
    });

    it('queued without a window to wait for (behind a running campaign): the gateway\'s reason', () => {
      const { r, out } = human();
      r.event({ t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d', queued: { reason: 'queued behind campaign c-5e6f7a8b' } });
      assert.match(out.text, /^queued: campaign c-0a1b2c3d does not start yet: queued behind campaign c-5e6f7a8b$/m);
      assert.doesNotMatch(out.text, /expires|supersedes/);
    });

    it('a campaign that starts at once: the line as before; supersedes shown there too', () => {
      const { r, out } = human();
      r.event({ t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d', supersedes: 'c-9f8e7d6c' });
      assert.deepEqual(out.text.trimEnd().split('\n'), [
        `Image verified and stored by the gateway (sha256 ${SHA.slice(0, 16)}…); campaign c-0a1b2c3d started`,
        'supersedes: campaign c-9f8e7d6c (pending, not started, same hardware models) is replaced by c-0a1b2c3d and will not run',
      ]);
    });

    it('the summary says queued (ok, nothing counted) and exitCodeFor gives 0, not 3', () => {
      const s = queuedSummary();
      assert.equal(s.queued, true);
      assert.equal(s.ok, true);
      assert.deepEqual([s.targeted, s.updated, s.devices, s.order], [0, 0, 0, []]);
      assert.equal(s.message, 'campaign c-0a1b2c3d is queued for the maintenance window opening 2026-11-22T02:00:00Z; no device updated yet');
      assert.equal(exitCodeFor(s), EXIT.ok);
      const behind = summarise({ campaign: 'c-0a1b2c3d', image: IMAGE, order: undefined, results: [], durationMs: 10, queued: { reason: 'queued behind campaign c-5e6f7a8b' } });
      assert.equal(behind.message, 'campaign c-0a1b2c3d is queued (queued behind campaign c-5e6f7a8b); no device updated yet');
      assert.equal(exitCodeFor(behind), EXIT.ok);
      const unqueued = summarise({ campaign: 'c-0a1b2c3d', image: IMAGE, order: undefined, results: [], durationMs: 2400 });
      assert.equal(exitCodeFor(unqueued), EXIT.nothingToUpdate, 'without queued nothing targeted is still exit 3');
    });

    it('plain text ends with the queued summary and how to follow it later, no results table', () => {
      const { r, out } = human();
      r.connected(HELLO, '/dev/ttyUSB0');
      r.event(QUEUED);
      r.summary(queuedSummary());
      const tail = out.text.trimEnd().split('\n').slice(-2);
      assert.deepEqual(tail, [
        'Queued: sensor-fw 1.2.0 is stored on the gateway; campaign c-0a1b2c3d is queued for the maintenance window opening 2026-11-22T02:00:00Z; no device updated yet',
        'Follow it once it starts: fwpush --port /dev/ttyUSB0 status',
      ]);
      assert.doesNotMatch(out.text, /Results for|No device took part|Done:|Finished with problems/);
    });

    it('JSON: the committed line as the gateway sent it, then a queued event with ISO times, then the summary with queued: true', () => {
      const out = new FakePipe();
      const r = new JsonRenderer(out, () => NOW);
      r.event(QUEUED);
      r.summary(queuedSummary());
      const lines = out.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(lines.map((l) => l.event), ['committed', 'queued', 'summary']);
      assert.deepEqual(lines[0], { event: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d', queued: { reason: 'waits for the next maintenance window', nextWindowAt: OPENS, expiresAt: EXPIRES }, supersedes: 'c-9f8e7d6c' });
      assert.deepEqual(lines[1], {
        event: 'queued', campaign: 'c-0a1b2c3d', sha256: SHA, reason: 'waits for the next maintenance window',
        nextWindowAt: OPENS, nextWindow: '2026-11-22T02:00:00Z', expiresAt: EXPIRES, expires: '2026-11-29T01:00:00Z', supersedes: 'c-9f8e7d6c',
      });
      assert.equal(lines[2]!.queued, true);
      assert.equal(lines[2]!.ok, true);
    });

    it('JSON: no queued event for a campaign that starts at once', () => {
      const out = new FakePipe();
      new JsonRenderer(out, () => NOW).event({ t: 'committed', ok: true, sha256: SHA, campaign: 'c-0a1b2c3d' });
      assert.deepEqual(out.text.trimEnd().split('\n').map((l) => (JSON.parse(l) as { event: string }).event), ['committed']);
    });
  });

  describe('fwpush status: the queued campaigns', () => {
    const queued = [
      { campaign: 'c-0a1b2c3d', image: IMAGE, hw: ['sensor-v1'], nextWindowAt: OPENS },
      { campaign: 'c-77aa88bb', image: { name: 'gw-fw', version: '2.0.0-rc.1', sha256: SHA }, hw: ['gw-a', 'gw-b'] },
    ];

    it('an idle gateway with queued campaigns: a table of campaign, image, hw and next window', () => {
      const { r, out } = human();
      r.event({ t: 'state', running: false, queued });
      assert.deepEqual(out.text.trimEnd().split('\n'), [
        'gateway idle: no campaign has run since it started',
        'Queued for a maintenance window (2):',
        '  campaign    image             hw          next window',
        '  c-0a1b2c3d  sensor-fw 1.2.0   sensor-v1   Sun 22 Nov 03:00 +01:00 (2026-11-22T02:00:00Z, in 1 h 00 min)',
        '  c-77aa88bb  gw-fw 2.0.0-rc.1  gw-a, gw-b  -',
      ]);
    });

    it('beside a running campaign, after its line; nothing more when none is queued', () => {
      const { r, out } = human('UTC');
      r.event({ t: 'state', running: true, campaign: 'c-5e6f7a8b', image: IMAGE, queued: queued.slice(0, 1) });
      assert.deepEqual(out.text.trimEnd().split('\n'), [
        'Campaign c-5e6f7a8b (sensor-fw 1.2.0) is running; following it',
        'Queued for a maintenance window (1):',
        '  campaign    image            hw         next window',
        '  c-0a1b2c3d  sensor-fw 1.2.0  sensor-v1  Sun 22 Nov 02:00 +00:00 (2026-11-22T02:00:00Z, in 1 h 00 min)',
      ]);
      const idle = human();
      idle.r.event({ t: 'state', running: false });
      assert.equal(idle.out.text, 'gateway idle: no campaign\n');
    });

    it('JSON: the state line carries queued as the gateway sent it', () => {
      const out = new FakePipe();
      new JsonRenderer(out).event({ t: 'state', running: false, queued });
      assert.deepEqual(JSON.parse(out.text), { event: 'state', running: false, queued });
    });
  });
});
