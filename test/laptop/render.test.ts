import assert from 'node:assert/strict';
import {
  EXIT, exitCodeFor, HumanRenderer, JsonRenderer, summarise, type CampaignRecord, type Summary, type TextOut,
} from '../../laptop/render.ts';
import type { CompleteMessage, GatewayUplinkMessage, OrderMessage, ResultMessage } from '../../protocol/uplink.ts';

const C = 'c-0001';
const SHA = 'ab'.repeat(32);
const IMAGE = { name: 'sensor-fw', version: '1.1.0', sha256: SHA };
const SIZE = 131_072;

const order: OrderMessage = {
  t: 'order', campaign: C, image: IMAGE,
  devices: [
    { id: 'dev-001', rank: 1, from: '1.0.0', rttMs: 3, etaMs: 900 },
    { id: 'dev-002', rank: 2, from: '1.0.0', rttMs: 5, etaMs: 1200 },
    { id: 'dev-003', rank: 3, from: '1.0.0', rttMs: 8, etaMs: 1500 },
    { id: 'dev-004', rank: 4, from: '1.0.0', rttMs: 9, etaMs: 1800 },
  ],
  excluded: [
    { id: 'dev-005', code: 'not-newer', reason: 'runs 1.1.0, not older than 1.1.0', version: '1.1.0' },
    { id: 'dev-006', code: 'offline', reason: 'no answer to ping', version: '1.0.0' },
  ],
};

const p = (ms: number, id: string, phase: Extract<GatewayUplinkMessage, { t: 'progress' }>['phase'], bytes = 0, extra: { bps?: number; etaMs?: number } = {}): [number, GatewayUplinkMessage] =>
  [ms, { t: 'progress', campaign: C, id, phase, bytes, total: SIZE, ...extra }];
const totals = (ms: number, done: number, kib: number, bps: number, etaMs?: number): [number, GatewayUplinkMessage] =>
  [ms, { t: 'totals', campaign: C, devices: 4, done, kib, totalKib: 512, bps, ...(etaMs !== undefined ? { etaMs } : {}) }];
const result = (ms: number, id: string, outcome: ResultMessage['outcome'], code: ResultMessage['code'], durationMs: number, retries = 0, reason?: string, from = '1.0.0'): [number, GatewayUplinkMessage] =>
  [ms, { t: 'result', campaign: C, id, outcome, code, ...(reason ? { reason } : {}), from, to: '1.1.0', durationMs, retries }];

/** A campaign as the gateway reports it: one updated, one failed after retries, one refused, one rolled back, two excluded. */
const RECORDED: [number, GatewayUplinkMessage][] = [
  [0, { t: 'committed', ok: true, sha256: SHA, campaign: C }],
  p(10, 'dev-001', 'probing'), p(10, 'dev-002', 'probing'), p(10, 'dev-003', 'probing'), p(10, 'dev-004', 'probing'), p(10, 'dev-006', 'probing'),
  [100, order],
  result(100, 'dev-005', 'skipped', 'not-newer', 0, 0, 'runs 1.1.0, not older than 1.1.0', '1.1.0'),
  result(100, 'dev-006', 'skipped', 'offline', 0, 0, 'no answer to ping'),
  p(100, 'dev-001', 'queued'), p(100, 'dev-002', 'queued'), p(100, 'dev-003', 'queued'), p(100, 'dev-004', 'queued'),
  totals(100, 0, 0, 0, 5400),
  p(200, 'dev-001', 'offering'), p(200, 'dev-002', 'offering'),
  p(300, 'dev-001', 'transferring'), p(300, 'dev-002', 'transferring'),
  p(550, 'dev-001', 'transferring', 65_536, { bps: 262_144, etaMs: 250 }),
  p(560, 'dev-002', 'transferring', 16_384, { bps: 65_536, etaMs: 1750 }),
  totals(600, 0, 80, 327_680, 4000),
  p(810, 'dev-001', 'transferring', 61_440, { bps: 250_000, etaMs: 280 }), // an older count arriving late: never shown
  p(820, 'dev-001', 'transferring', SIZE, { bps: 262_144, etaMs: 0 }),
  p(830, 'dev-001', 'verifying', SIZE), p(900, 'dev-001', 'activating', SIZE), p(950, 'dev-001', 'rebooting', SIZE),
  p(1300, 'dev-001', 'confirming', SIZE), p(1350, 'dev-001', 'done', SIZE),
  result(1350, 'dev-001', 'updated', 'ok', 1150),
  p(1360, 'dev-003', 'offering'), p(1380, 'dev-003', 'skipped'),
  result(1380, 'dev-003', 'skipped', 'busy', 20, 0, 'device busy'),
  p(1390, 'dev-004', 'offering'), p(1400, 'dev-004', 'transferring'),
  totals(2000, 2, 200, 100_000, 3000),
  p(2100, 'dev-004', 'transferring', SIZE, { bps: 131_072, etaMs: 0 }), p(2110, 'dev-004', 'verifying', SIZE),
  p(2120, 'dev-004', 'activating', SIZE), p(2130, 'dev-004', 'rebooting', SIZE), p(2500, 'dev-004', 'rolled-back', SIZE),
  result(2500, 'dev-004', 'rolled-back', 'self-test-failed', 1110, 0, 'new image failed its self-test'),
  totals(2600, 3, 384, 50_000, 1000),
  p(2700, 'dev-002', 'failed', 32_768),
  result(2700, 'dev-002', 'failed', 'connection-lost', 2500, 2, 'device went offline during the transfer'),
  totals(4700, 4, 384, 0, 0),
  [4700, { t: 'complete', campaign: C, devices: 6, updated: 1, failed: 1, rolledBack: 1, skipped: 3, durationMs: 4700 }],
];

/** A pipe or a file: write() only. */
class FakePipe implements TextOut {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
}

/**
 * A terminal as cli-progress drives it: it checks isTTY and columns and moves the cursor with
 * node:readline (cursorTo, moveCursor, clearLine, clearScreenDown), which write ANSI sequences to
 * the stream, so write() is all it calls. The methods below are there for anything that calls
 * them directly, as on a real tty.WriteStream.
 */
class FakeTty extends FakePipe {
  readonly isTTY = true;
  readonly columns = 100;
  readonly rows = 40;
  cursorTo(): boolean { return true; }
  moveCursor(): boolean { return true; }
  clearLine(): boolean { return true; }
  clearScreenDown(): boolean { return true; }
}

function feed(r: { event(m: GatewayUplinkMessage): void }, clock: { now: number }, msgs = RECORDED): void {
  for (const [at, m] of msgs) {
    clock.now = at;
    r.event(m);
  }
}

function record(): { campaign: string; image: Summary['image']; order: OrderMessage; results: ResultMessage[]; durationMs: number } {
  const results = RECORDED.map(([, m]) => m).filter((m): m is ResultMessage => m.t === 'result');
  return { campaign: C, image: IMAGE, order, results, durationMs: 4700 };
}

const stripAnsi = (s: string): string => s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');

/**
 * A campaign the gateway halted (docs/protocol.md §7.8.1): dev-001 and dev-002 rolled back, which
 * passes the 20 % threshold; dev-003 was stopped mid-transfer and dev-004 never started.
 */
const HALT = { code: 'rollback-threshold', reason: '2 of 2 finished devices rolled back, threshold 20 %', rolledBack: 2, finished: 2, thresholdPct: 20 } as const;
const HALTED_RUN: [number, GatewayUplinkMessage][] = [
  [0, { ...order, excluded: [] }],
  p(10, 'dev-001', 'offering'), p(10, 'dev-002', 'offering'),
  p(900, 'dev-001', 'rolled-back', SIZE), result(900, 'dev-001', 'rolled-back', 'self-test-failed', 890, 0, 'device came back on 1.0.0 (self-test failed)'),
  p(950, 'dev-002', 'rolled-back', SIZE), result(950, 'dev-002', 'rolled-back', 'self-test-failed', 940, 0, 'device came back on 1.0.0 (self-test failed)'),
  p(960, 'dev-003', 'skipped', 40_960),
  result(960, 'dev-003', 'skipped', 'campaign-halted', 20, 0, `rollout stopped before this device was activated (${HALT.reason})`),
  p(960, 'dev-004', 'skipped'), result(960, 'dev-004', 'skipped', 'campaign-halted', 0, 0, `rollout stopped before this device started (${HALT.reason})`),
  [970, { t: 'complete', campaign: C, devices: 4, updated: 0, failed: 0, rolledBack: 2, skipped: 2, durationMs: 970, halted: HALT }],
];
const haltedRecord = (): CampaignRecord => {
  const results = HALTED_RUN.map(([, m]) => m).filter((m): m is ResultMessage => m.t === 'result');
  const complete = HALTED_RUN.map(([, m]) => m).find((m): m is CompleteMessage => m.t === 'complete');
  return { campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results, durationMs: 970, ...(complete ? { complete } : {}) };
};

describe('fwpush rendering', () => {
  describe('summary and exit code (shared by push and status)', () => {
    it('all targeted devices updated -> ok, exit 0', () => {
      const results: ResultMessage[] = order.devices.map((d) => ({ t: 'result', campaign: C, id: d.id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 900, retries: 0 }));
      const s = summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results, durationMs: 5000 });
      assert.equal(s.ok, true);
      assert.equal(s.updated, 4);
      assert.equal(s.targeted, 4);
      assert.deepEqual(s.order, ['dev-001', 'dev-002', 'dev-003', 'dev-004']);
      assert.equal(s.message, 'all 4 targeted devices run 1.1.0');
      assert.equal(exitCodeFor(s), EXIT.ok);
      assert.equal(exitCodeFor(s), 0);
    });

    it('some targeted devices failed -> exit 1, counted by outcome', () => {
      const s = summarise(record());
      assert.equal(s.ok, false);
      assert.deepEqual(
        { devices: s.devices, targeted: s.targeted, updated: s.updated, failed: s.failed, rolledBack: s.rolledBack, skipped: s.skipped },
        { devices: 6, targeted: 4, updated: 1, failed: 1, rolledBack: 1, skipped: 3 },
      );
      assert.equal(s.message, '3 of 4 targeted devices were not updated');
      assert.equal(exitCodeFor(s), 1);
    });

    it('done with the online devices, the rest pending at their check-in -> exit 7; a failure among them still exits 1', () => {
      const updated = (id: string): ResultMessage => ({ t: 'result', campaign: C, id, outcome: 'updated', code: 'ok', from: '1.0.0', to: '1.1.0', durationMs: 900, retries: 0 });
      const waiting = { t: 'waiting' as const, campaign: C, pending: 2, devices: [{ id: 'dev-003', reason: 'offline' }, { id: 'dev-004', reason: 'offline' }], expiresAt: Date.UTC(2026, 11, 14) };
      const s = summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results: [updated('dev-001'), updated('dev-002')], durationMs: 5000, waiting });
      assert.deepEqual([s.ok, s.updated, s.pending, s.failed], [false, 2, 2, 0]);
      assert.match(s.message, /^done with the devices that were online: 2 updated; 2 pending at their check-in until 2026-12-14T00:00:00Z/);
      assert.equal(exitCodeFor(s), EXIT.pending);
      assert.equal(EXIT.pending, 7);
      const failed: ResultMessage = { ...updated('dev-002'), outcome: 'failed', code: 'timeout' };
      assert.equal(exitCodeFor(summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results: [updated('dev-001'), failed], durationMs: 5000, waiting })), EXIT.devicesFailed);
      // once the campaign completed, nothing is pending any more
      const complete: CompleteMessage = { t: 'complete', campaign: C, devices: 2, updated: 2, failed: 0, rolledBack: 0, skipped: 0, durationMs: 1 };
      assert.equal(summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results: [updated('dev-001')], durationMs: 1, waiting, complete }).pending, 0);
    });

    it('a cancelled campaign (devices left on their old image, none failed) -> exit 8', () => {
      const r = (id: string, outcome: ResultMessage['outcome'], code: ResultMessage['code']): ResultMessage => ({ t: 'result', campaign: C, id, outcome, code, from: '1.0.0', to: '1.1.0', durationMs: 10, retries: 0 });
      const s = summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results: [r('dev-001', 'updated', 'ok'), r('dev-002', 'cancelled', 'cancelled'), r('dev-003', 'cancelled', 'cancelled'), r('dev-004', 'cancelled', 'cancelled')], durationMs: 10 });
      assert.deepEqual([s.updated, s.cancelled], [1, 3]);
      assert.equal(exitCodeFor(s), EXIT.cancelled);
      assert.equal(EXIT.cancelled, 8);
      assert.equal(exitCodeFor(summarise({ campaign: C, image: IMAGE, order: { ...order, excluded: [] }, results: [r('dev-001', 'failed', 'timeout'), r('dev-002', 'cancelled', 'cancelled')], durationMs: 10 })), EXIT.devicesFailed);
    });

    it('no device targeted -> exit 3, naming why they were skipped', () => {
      const excluded: ResultMessage[] = [
        { t: 'result', campaign: C, id: 'dev-005', outcome: 'skipped', code: 'not-newer', from: '1.1.0', to: '1.1.0', durationMs: 0, retries: 0 },
        { t: 'result', campaign: C, id: 'dev-007', outcome: 'skipped', code: 'incompatible-hw', from: '1.0.0', to: '1.1.0', durationMs: 0, retries: 0 },
      ];
      const s = summarise({ campaign: C, image: IMAGE, order: { ...order, devices: [] }, results: excluded, durationMs: 300 });
      assert.equal(s.targeted, 0);
      assert.equal(s.ok, false);
      assert.match(s.message, /no device needed sensor-fw 1\.1\.0: 2 skipped \(not-newer, incompatible-hw\)/);
      assert.equal(exitCodeFor(s), 3);
      assert.equal(exitCodeFor(summarise({ campaign: C, image: IMAGE, order: undefined, results: [], durationMs: 0 })), 3);
    });

    it('keeps the summary keys scripts rely on', () => {
      assert.deepEqual(Object.keys(summarise(record())).sort(), [
        'campaign', 'cancelled', 'devices', 'durationMs', 'event', 'expired', 'failed', 'image', 'message', 'ok', 'order', 'pending', 'rolledBack', 'skipped',
        'superseded', 'targeted', 'updated',
      ]);
    });

    it('a campaign the gateway halted (§7.8.1) -> exit 6, the halt in the summary and its message', () => {
      const s = summarise(haltedRecord());
      assert.equal(s.ok, false);
      assert.deepEqual(s.halted, HALT);
      assert.deepEqual([s.rolledBack, s.skipped, s.updated], [2, 2, 0]);
      assert.equal(s.message, '4 of 4 targeted devices were not updated; rollout stopped: 2 of 2 finished devices rolled back, threshold 20 %');
      assert.equal(exitCodeFor(s), EXIT.halted);
      assert.equal(EXIT.halted, 6);
      assert.ok(new Set(Object.values(EXIT)).size === Object.keys(EXIT).length, 'exit codes are distinct');
      // without the halt the same results are an ordinary failure
      const { complete: _complete, ...withoutComplete } = haltedRecord();
      const plain = summarise(withoutComplete);
      assert.equal(plain.halted, undefined);
      assert.equal(exitCodeFor(plain), EXIT.devicesFailed);
    });
  });

  describe('plain text (not a terminal)', () => {
    function run(): string[] {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      feed(r, clock);
      r.summary(summarise(record()));
      r.close();
      assert.doesNotMatch(out.text, /\x1b/, 'no escape sequences in a pipe');
      return out.text.split('\n');
    }

    it('prints a line per phase change of a device, not per byte count', () => {
      const lines = run();
      const live = lines.slice(0, lines.findIndex((l) => l.startsWith('Results for')));
      const dev1 = live.filter((l) => /^ {2}\S+ +dev-001\b/.test(l));
      assert.deepEqual(dev1.map((l) => l.trim().split(/\s+/)[0]), ['offering', 'transferring', 'verifying', 'activating', 'rebooting', 'confirming', 'updated']);
      assert.ok(lines.includes('  transferring dev-001'));
      assert.equal(lines.filter((l) => l.includes('queued')).length, 0, 'queued is in the order listing, not a line per device');
      assert.equal(lines.filter((l) => l.startsWith('Measuring the link')).length, 1, 'probing is said once');
    });

    it('prints totals at most every 2 s', () => {
      const totalsLines = run().filter((l) => l.startsWith('Totals: '));
      assert.deepEqual(totalsLines, [
        'Totals: 0/4 done, 0 B of 512 KiB, 0 B/s, ETA 5.4 s', // t = 100
        'Totals: 3/4 done, 384 KiB of 512 KiB, 49 KiB/s, ETA 1.0 s', // t = 2600 (600 and 2000 are too soon)
        'Totals: 4/4 done, 384 KiB of 512 KiB, 0 B/s', // t = 4700
      ]);
    });

    it('prints each result with its reason, and excluded devices once in the order', () => {
      const lines = run();
      assert.ok(lines.some((l) => /^ {2}updated {6}dev-001 {3}1\.0\.0 -> 1\.1\.0 {2}\(1\.1 s\)$/.test(l)), lines.join('\n'));
      assert.ok(lines.some((l) => /failed +dev-002 .*\(2\.5 s, 2 retries\) {2}connection-lost: device went offline during the transfer/.test(l)));
      assert.ok(lines.some((l) => /rolled-back +dev-004 .*self-test-failed: new image failed its self-test/.test(l)));
      assert.ok(lines.some((l) => /skipped +dev-003 .*busy: device busy/.test(l)));
      assert.ok(lines.includes('Not updated (2):'));
      assert.equal(lines.filter((l) => /^ {2}skipped +dev-00[56]/.test(l)).length, 0, 'excluded devices are listed under "Not updated", not again as results');
    });

    it('ends with a table in rollout order, with reasons, then the summary line', () => {
      const lines = run();
      const at = lines.findIndex((l) => l.startsWith('Results for sensor-fw 1.1.0 (campaign c-0001), in rollout order:'));
      assert.ok(at > 0);
      const header = lines[at + 1]!.trim().split(/\s+/);
      assert.deepEqual(header, ['#', 'device', 'result', 'from', 'to', 'duration', 'retries', 'reason']);
      const rows = lines.slice(at + 2, at + 8).map((l) => l.trim().split(/\s{2,}/));
      assert.deepEqual(rows.map((r) => r[1]), ['dev-001', 'dev-002', 'dev-003', 'dev-004', 'dev-005', 'dev-006']);
      assert.deepEqual(rows[0], ['1', 'dev-001', 'updated', '1.0.0', '1.1.0', '1.1 s', '0']);
      assert.deepEqual(rows[1], ['2', 'dev-002', 'failed', '1.0.0', '-', '2.5 s', '2', 'connection-lost: device went offline during the transfer']);
      assert.deepEqual(rows[3], ['4', 'dev-004', 'rolled-back', '1.0.0', '-', '1.1 s', '0', 'self-test-failed: new image failed its self-test']);
      assert.deepEqual(rows[4], ['-', 'dev-005', 'skipped', '1.1.0', '-', '-', '0', 'not-newer: runs 1.1.0, not older than 1.1.0']);
      const summaryAt = lines.findIndex((l) => l.startsWith('Finished with problems: 1/4 targeted devices updated, 1 failed, 1 rolled back, 3 skipped (6 known) in 4.7 s'));
      assert.ok(summaryAt > at + 7, 'the summary comes after the table');
      assert.equal(lines[summaryAt + 1], '3 of 4 targeted devices were not updated');
    });

    it('status of a finished campaign: the state line, no live lines, then the table', () => {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      const replay: [number, GatewayUplinkMessage][] = [
        [0, { t: 'state', running: false, campaign: C, image: IMAGE }], [0, order],
        p(0, 'dev-001', 'done', SIZE), p(0, 'dev-002', 'failed'), p(0, 'dev-003', 'skipped'), p(0, 'dev-004', 'rolled-back'), p(0, 'dev-006', 'probing'),
        totals(0, 4, 384, 0, 0),
        ...RECORDED.filter(([, m]) => m.t === 'result' || m.t === 'complete'),
      ];
      feed(r, clock, replay);
      r.summary(summarise(record()));
      const lines = out.text.split('\n');
      assert.equal(lines[0], 'Last campaign c-0001 (sensor-fw 1.1.0) has finished; its results:');
      assert.equal(lines.filter((l) => l.startsWith('Totals') || l.startsWith('Measuring') || /^ {2}(updated|failed) /.test(l)).length, 0);
      assert.ok(lines.some((l) => l.startsWith('Results for sensor-fw 1.1.0')));
    });

    it('a halted campaign: one clear line when its completion comes, and a result line per device it left out', () => {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      feed(r, clock, HALTED_RUN);
      const live = out.text.split('\n');
      assert.equal(live.filter((l) => l.startsWith('Rollout stopped')).length, 1);
      assert.ok(live.includes('Rollout stopped: 2 of 2 finished devices rolled back, threshold 20 %; 2 devices not updated because of it'), out.text);
      assert.ok(live.some((l) => /^ {2}skipped +dev-003 .*campaign-halted: rollout stopped before this device was activated/.test(l)), out.text);
      assert.ok(live.some((l) => /^ {2}skipped +dev-004 .*campaign-halted: rollout stopped before this device started/.test(l)), out.text);
      assert.ok(live.findIndex((l) => l.startsWith('Rollout stopped')) > live.findIndex((l) => l.includes('dev-004')), 'said when the completion comes, after the results');
      r.summary(summarise(haltedRecord()));
      const lines = out.text.split('\n');
      assert.ok(lines.includes('4 of 4 targeted devices were not updated; rollout stopped: 2 of 2 finished devices rolled back, threshold 20 %'));
      assert.match(out.text, /4 +dev-004 +skipped +1\.0\.0 +- +- +0 +campaign-halted: rollout stopped before this device started/);
    });

    it('a campaign that was not halted has no such line', () => {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      feed(r, clock);
      r.summary(summarise(record()));
      assert.doesNotMatch(out.text, /rollout stopped/i);
    });

    it('an idle gateway', () => {
      const out = new FakePipe();
      new HumanRenderer({ out }).event({ t: 'state', running: false });
      assert.equal(out.text, 'gateway idle: no campaign\n');
    });

    it('an error with a hint goes to the error stream', () => {
      const out = new FakePipe();
      const err = new FakePipe();
      new HumanRenderer({ out, err }).error('E_UPLINK_STATE: gateway refused the upload (busy): campaign c-1 is still running', 'E_UPLINK_STATE', 'run `fwpush --port /dev/ttyUSB0 status` to follow it');
      assert.equal(out.text, '');
      assert.match(err.text, /busy.*\nfwpush: run `fwpush --port \/dev\/ttyUSB0 status` to follow it\n$/);
    });
  });

  describe('terminal', () => {
    it('draws bars while devices are active and ends with the table', () => {
      const out = new FakeTty();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      r.upload(65_536, SIZE, 0);
      r.upload(SIZE, SIZE, 0);
      feed(r, clock);
      r.summary(summarise(record()));
      r.close();
      const text = stripAnsi(out.text);
      assert.match(text, /Uploaded 128 KiB/);
      assert.match(text, /Results for sensor-fw 1\.1\.0 \(campaign c-0001\), in rollout order:/);
      assert.match(text, /2 +dev-002 +failed +1\.0\.0 +- +2\.5 s +2 +connection-lost: device went offline during the transfer/);
      assert.match(text, /Finished with problems: 1\/4 targeted devices updated/);
      assert.match(out.text, /\x1b\[\?25l/, 'hides the cursor while drawing');
      assert.ok(out.text.lastIndexOf('\x1b[?25h') > out.text.lastIndexOf('\x1b[?25l'), 'and shows it again');
    });

    it('shows the overall bar and one bar per active device, never going back within a phase', () => {
      const out = new FakeTty();
      const clock = { now: 0 };
      const r = new HumanRenderer({ out, err: out, now: () => clock.now });
      const seen = new Map<string, { phase: string; pct: number }>();
      let sawDevice = false;
      // each conditional check below counts that it ran: a recording that never meets its condition fails, not passes
      const ran = { compared: 0, midTransfer: 0, done: 0 };
      for (const [at, m] of RECORDED) {
        clock.now = at;
        r.event(m);
        for (const line of r.barLines(100)) {
          assert.ok(line.length <= 100);
          const d = /^(dev-\d+) +(\w[\w-]*) +(?:\[[^\]]*\] +(\d+)%)?/.exec(line);
          if (!d) continue;
          sawDevice = true;
          const [, id, phase, pct] = d;
          const before = seen.get(id!);
          if (pct !== undefined && before !== undefined && before.phase === phase) {
            assert.ok(Number(pct) >= before.pct, `${id} went back: ${line}`);
            ran.compared++;
          }
          seen.set(id!, { phase: phase!, pct: Number(pct ?? 0) });
        }
        if (m.t === 'progress' && m.id === 'dev-001' && m.bytes === 65_536) {
          ran.midTransfer++;
          const lines = r.barLines(100);
          assert.match(lines[0]!, /^Devices +0\/4 done +\[[█░]+\] {2}0 B of 512 KiB {2}0 B\/s {2}ETA 5\.4 s$/);
          assert.match(lines[1]!, /^dev-001 +transferring +\[█+░+\] +50% +256 KiB\/s {2}ETA 250 ms$/);
          assert.match(lines[2]!, /^dev-002 +transferring +\[░+\] +0%$/);
          assert.equal(new Set(lines.map((l) => `${l.indexOf('[')}:${l.indexOf(']')}`)).size, 1, `the bars line up:\n${lines.join('\n')}`);
          const narrow = r.barLines(60);
          assert.ok(narrow.every((l) => l.length <= 60));
          assert.match(narrow[0]!, /ETA 5\.4 s$/, 'on a narrow terminal the least useful details go first');
          assert.match(narrow[1]!, /50%.*ETA 250 ms$/);
        }
        if (m.t === 'progress' && m.phase === 'done') {
          assert.ok(!r.barLines().some((l) => l.startsWith(m.id)), 'a finished device has no bar');
          ran.done++;
        }
      }
      assert.ok(sawDevice);
      assert.equal(ran.midTransfer, 1, 'the recording has dev-001 at 64 KiB, where the bars are checked');
      assert.ok(ran.done >= 1 && ran.compared >= 1, `the done and never-back checks ran: ${JSON.stringify(ran)}`);
      assert.deepEqual(r.barLines().length, 1, 'only the overall bar is left');
      r.close();
    });

    it('limits device bars and says how many more are active', () => {
      const out = new FakeTty();
      const r = new HumanRenderer({ out, err: out, maxBars: 3 });
      const devices = Array.from({ length: 10 }, (_, i) => ({ id: `dev-${String(i + 1).padStart(3, '0')}`, rank: i + 1, from: '1.0.0' }));
      r.event({ ...order, devices, excluded: [] });
      for (const d of devices) r.event({ t: 'progress', campaign: C, id: d.id, phase: 'offering', bytes: 0, total: SIZE });
      let lines = r.barLines();
      assert.equal(lines.length, 4);
      assert.match(lines[0]!, /\+7 more active$/);
      assert.match(r.barLines(50)[0]!, /\+7 more active$/, 'kept on a narrow terminal');
      r.event({ t: 'progress', campaign: C, id: 'dev-002', phase: 'failed', bytes: 0, total: SIZE });
      lines = r.barLines();
      assert.deepEqual(lines.slice(1).map((l) => l.split(' ')[0]), ['dev-001', 'dev-003', 'dev-004'], 'the next active device takes the free bar');
      assert.match(lines[0]!, /\+6 more active$/);
      r.close();
    });
  });

  describe('JSON lines', () => {
    it('one parseable object per line for every event, the summary last', () => {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new JsonRenderer(out, () => clock.now);
      r.event({ t: 'state', running: true, campaign: C, image: IMAGE });
      feed(r, clock);
      r.summary(summarise(record()));
      const lines = out.text.trimEnd().split('\n');
      const objs = lines.map((l) => JSON.parse(l) as { event: string });
      assert.equal(objs.length, RECORDED.length + 2);
      assert.ok(objs.every((o) => typeof o.event === 'string'));
      const kinds = new Set(objs.map((o) => o.event));
      for (const k of ['state', 'committed', 'order', 'progress', 'totals', 'result', 'complete', 'summary']) assert.ok(kinds.has(k), k);
      const withRate = objs.find((o) => o.event === 'progress' && 'bps' in o) as { bps: number; etaMs: number } | undefined;
      assert.deepEqual([withRate?.bps, withRate?.etaMs], [262_144, 250]);
      assert.equal(objs.at(-1)!.event, 'summary');
    });

    it('a halted campaign: the complete line carries the halt as the gateway sent it, and so does the summary', () => {
      const out = new FakePipe();
      const clock = { now: 0 };
      const r = new JsonRenderer(out, () => clock.now);
      feed(r, clock, HALTED_RUN);
      r.summary(summarise(haltedRecord()));
      const objs = out.text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      const complete = objs.find((o) => o.event === 'complete');
      assert.deepEqual(complete, { event: 'complete', campaign: C, devices: 4, updated: 0, failed: 0, rolledBack: 2, skipped: 2, durationMs: 970, halted: HALT });
      const halted = objs.filter((o) => o.event === 'result' && o.code === 'campaign-halted').map((o) => o.id);
      assert.deepEqual(halted, ['dev-003', 'dev-004']);
      const summary = objs.at(-1)!;
      assert.equal(summary.event, 'summary');
      assert.deepEqual(summary.halted, HALT);
      assert.equal(summary.ok, false);
    });

    it('an error line carries the hint', () => {
      const out = new FakePipe();
      new JsonRenderer(out).error('busy', 'E_UPLINK_STATE', 'run `fwpush --port p status` to follow it');
      assert.deepEqual(JSON.parse(out.text), { event: 'error', code: 'E_UPLINK_STATE', message: 'busy', hint: 'run `fwpush --port p status` to follow it' });
    });

    it('the gateway hello\'s challenge (a byte string, docs/protocol.md §7.2.4) is printed as hex', () => {
      const out = new FakePipe();
      const challenge = Uint8Array.from({ length: 32 }, (_, i) => i);
      new JsonRenderer(out).event({ t: 'hello', proto: 1, role: 'gateway', agent: 'fwgate/0.1.0', maxFrame: 4096, window: 16, maxMessage: 1048576, challenge });
      assert.equal(JSON.parse(out.text).challenge, Buffer.from(challenge).toString('hex'));
    });
  });
});

describe('fwpush rendering: the fleet report (docs/protocol.md §7.11.4)', () => {
  const NOW = Date.UTC(2026, 10, 22, 1, 30, 0);
  const fleet: Extract<GatewayUplinkMessage, { t: 'fleet' }> = {
    t: 'fleet', now: NOW,
    devices: [
      { id: 'dev-001', hw: 'sensor-v1', version: '1.1.0', online: true, lastCheckIn: NOW - 12_000, lastResult: { campaign: C, outcome: 'updated', code: 'ok', version: '1.1.0', at: NOW - 60_000 } },
      { id: 'dev-002', hw: 'sensor-v1', version: '1.0.0', online: false, lastCheckIn: NOW - 3 * 86_400_000 - 7_200_000 },
    ],
    more: 3,
  };

  it('a table with ages by the gateway\'s clock (not the laptop\'s), and how many devices were left out', () => {
    const out = new FakePipe();
    const r = new HumanRenderer({ out, err: out, now: () => 0 }); // a laptop clock far from the gateway's
    r.event(fleet);
    const lines = out.text.trimEnd().split('\n');
    assert.equal(lines[0], 'Fleet (5 devices known to the gateway):');
    assert.deepEqual(lines[1]!.trim().split(/\s{2,}/), ['device', 'hw', 'version', 'online', 'last check-in', 'last result']);
    assert.deepEqual(lines[2]!.trim().split(/\s{2,}/), ['dev-001', 'sensor-v1', '1.1.0', 'yes', '12 s ago', `updated (ok) 1.1.0, 1 min 00 s ago, ${C}`]);
    assert.deepEqual(lines[3]!.trim().split(/\s{2,}/), ['dev-002', 'sensor-v1', '1.0.0', 'no', '3 d 2 h ago', '-']);
    assert.match(lines[4]!, /… and 3 more .*`fwgate report`/);
    assert.equal(lines.length, 5);
  });

  it('an empty fleet in one line; JSON passes the message through as a `fleet` event', () => {
    const out = new FakePipe();
    new HumanRenderer({ out, err: out }).event({ t: 'fleet', now: NOW, devices: [] });
    assert.equal(out.text, 'Fleet: no device has reported to the gateway yet\n');
    const json = new FakePipe();
    new JsonRenderer(json).event(fleet);
    const { t: _t, ...rest } = fleet;
    assert.deepEqual(JSON.parse(json.text), { event: 'fleet', ...rest });
  });
});
