import assert from 'node:assert/strict';
import type { SimEvent } from '../../device-sim/device.ts';
import { BUILTIN_PROFILES } from '../../device-sim/profiles.ts';
import type { ResultMessage } from '../../protocol/uplink.ts';
import { Rig, sampleImage } from '../helpers/rig.ts';
import {
  FAULT_CONFIG, FAULT_DEVICE, armFault, describeFault, devicesDir, runCampaign, settleFleet, storeDir, storeImage,
  type CampaignRun, type FaultSpec,
} from './harness.ts';
import { checkInvariants, describeViolations } from './invariants.ts';

/**
 * The fault matrix (docs/reliability.md): each fault at each phase where it applies, on one
 * device of three in a small rollout. Every cell checks the invariants from the devices' and the
 * store's files (no device unbootable, no stored image corrupted, every device accounted for)
 * and the outcome that fault must have.
 */

const SIZE = 24 * 1024;
const CHUNK = 1024; // 24 chunks: several flush batches, so a cut mid-transfer leaves something to resume
const FAULTY = 1;

interface Cell {
  name: string;
  fault: FaultSpec;
  /** Put every device behind its own (lan) link proxy, for link outages. */
  links?: boolean;
  expect: (c: CellRun) => void;
}

interface CellRun {
  run: CampaignRun;
  /** The faulty device's own events. */
  events: SimEvent[];
  result: ResultMessage;
  fired: boolean;
  stats: { chunks: number; badChunks: number; powerCuts: number; drops: number };
}

const accepts = (c: CellRun): Extract<SimEvent, { type: 'offer-accepted' }>[] =>
  c.events.filter((e): e is Extract<SimEvent, { type: 'offer-accepted' }> => e.type === 'offer-accepted');

function updatedAfterRetry(c: CellRun): void {
  assert.equal(c.result.outcome, 'updated', `faulty device: ${JSON.stringify(c.result)}`);
  assert.ok(c.result.retries >= 1, `the fault cost at least one retry (retries ${c.result.retries})`);
}

/** A later offer was accepted from where the device already was, not from 0. */
function resumed(c: CellRun, from: (next: number) => boolean, what: string): void {
  const later = accepts(c).slice(1);
  assert.ok(later.length >= 1, 'the gateway offered again after the fault');
  assert.ok(later.some((a) => a.resumed && from(a.next)), `${what}: accepts ${JSON.stringify(later.map((a) => [a.next, a.resumed]))}`);
  assert.ok(later.every((a) => a.next > 0), 'no re-offer started the transfer over from 0');
}

/** The trial image was reverted by the bootloader because the power cut came before its confirmation. */
function revertedByPowerCut(c: CellRun): void {
  assert.ok(c.events.some((e) => e.type === 'reverted' && /not confirmed/.test(e.reason)), 'the bootloader reverted the unconfirmed trial image');
}

const cells: Cell[] = [
  {
    name: 'power cut while chunks are written: updated after a retry, transfer resumed (not restarted)',
    fault: { kind: 'power-cut', device: FAULTY, phase: 'chunk-write', atFraction: 0.3 },
    expect: (c) => {
      updatedAfterRetry(c);
      resumed(c, (next) => next >= 0.3 * SIZE, 'resumed from what was flushed before the cut');
    },
  },
  {
    name: 'power cut right after the last chunk is flushed: updated after a retry, nothing sent again',
    fault: { kind: 'power-cut', device: FAULTY, phase: 'after-transfer' },
    expect: (c) => {
      updatedAfterRetry(c);
      resumed(c, (next) => next === SIZE, 'the re-offer found the whole image held');
    },
  },
  {
    name: 'power cut while the slot state is written at activation: updated after a retry, the verified image kept',
    fault: { kind: 'power-cut', device: FAULTY, phase: 'activation' },
    expect: (c) => {
      updatedAfterRetry(c);
      resumed(c, (next) => next === SIZE, 'the ready image survived the cut');
    },
  },
  {
    // NEEDS the gateway change in progress (device-session.ts): a revert caused by a power cut
    // during first-boot is retried, not terminal. Before it lands this cell ends rolled-back/reverted.
    name: 'power cut at the first boot of the new image: reverted by the bootloader, then updated after a retry [needs retry-after-revert]',
    fault: { kind: 'power-cut', device: FAULTY, phase: 'first-boot' },
    expect: (c) => {
      revertedByPowerCut(c);
      updatedAfterRetry(c);
    },
  },
  {
    // NEEDS the same gateway change: a power cut before the confirmation is retried.
    name: 'power cut when the confirmation arrives: reverted by the bootloader, then updated after a retry [needs retry-after-revert]',
    fault: { kind: 'power-cut', device: FAULTY, phase: 'before-confirm' },
    expect: (c) => {
      revertedByPowerCut(c);
      updatedAfterRetry(c);
    },
  },
  {
    name: 'corrupted chunk: updated in the same attempt, only that chunk sent again',
    fault: { kind: 'corrupt-chunk', device: FAULTY, k: 5 },
    expect: (c) => {
      assert.equal(c.result.outcome, 'updated');
      assert.equal(c.result.retries, 0, 'no new attempt for one bad chunk');
      assert.equal(c.stats.badChunks, 1);
      assert.ok(c.stats.chunks <= SIZE / CHUNK + 8, `${c.stats.chunks} chunk messages for ${SIZE / CHUNK} chunks: a resend, not a restart`);
    },
  },
  {
    name: 'link dropped mid-transfer: updated after a retry, transfer resumed',
    fault: { kind: 'link-drop', device: FAULTY, n: 10 },
    expect: (c) => {
      updatedAfterRetry(c);
      assert.equal(c.stats.drops, 1);
      resumed(c, (next) => next >= 8 * CHUNK, 'resumed from what was acked before the drop');
    },
  },
  {
    name: 'link outage mid-transfer (connection stays open): updated, never restarted',
    fault: { kind: 'link-outage', device: FAULTY, when: { atFraction: 0.4 }, forMs: 1000 },
    links: true,
    expect: (c) => {
      assert.equal(c.result.outcome, 'updated');
      assert.ok(accepts(c).slice(1).every((a) => a.next > 0), 'a re-offer, if any, resumed');
    },
  },
  {
    name: 'self-test fails on the first boot: rolled back to the old version, with the self-test reason',
    fault: { kind: 'fail-self-test', device: FAULTY },
    expect: (c) => {
      assert.deepEqual([c.result.outcome, c.result.code], ['rolled-back', 'self-test-failed']);
      assert.match(c.result.reason ?? '', /self-test/);
    },
  },
  {
    name: 'busy device: pending while busy (never forced, nothing transferred then), updated once it reports idle',
    fault: { kind: 'busy', device: FAULTY },
    expect: (c) => {
      assert.deepEqual([c.result.outcome, c.result.code], ['updated', 'ok']);
      assert.ok(c.result.retries >= 1, `the busy refusal counts as an attempt: ${JSON.stringify(c.result)}`);
      const rejected = c.events.findIndex((e) => e.type === 'offer-rejected' && e.code === 'busy');
      const acceptedAfter = c.events.findIndex((e, i) => i > rejected && e.type === 'offer-accepted');
      assert.ok(rejected >= 0 && acceptedAfter > rejected, 'refused as busy first, accepted only after');
    },
  },
];

describe('faults: matrix (each fault at each phase, one device of three)', function () {
  this.timeout(60_000);
  let rig: Rig | undefined;
  afterEach(async () => {
    await rig?.stop();
    rig = undefined;
  });

  for (const cell of cells) {
    it(cell.name, async () => {
      rig = await Rig.start({
        devices: 3, config: FAULT_CONFIG, device: FAULT_DEVICE,
        ...(cell.links ? { profiles: () => BUILTIN_PROFILES.lan } : {}),
      });
      const { image, manifest } = sampleImage({ version: '1.1.0', size: SIZE, chunk: CHUNK });
      const stored = await storeImage(rig, image, manifest);
      const faulty = rig.sims.devices[FAULTY]!;
      const events: SimEvent[] = [];
      faulty.on('event', (e) => events.push(e));
      const armed = armFault(rig, cell.fault, manifest);
      let run: CampaignRun;
      try {
        run = await runCampaign(rig, stored, { timeoutMs: 40_000 });
      } finally {
        armed.disarm();
      }
      assert.ok(!run.timedOut, 'the campaign completed in time');
      const unsettled = await settleFleet(rig, 15_000);
      const report = await checkInvariants({
        devicesDir: devicesDir(rig), ids: rig.sims.devices.map((d) => d.id), storeDir: storeDir(rig),
        storedImages: [manifest.sha256], campaign: { image: run.image, targets: run.targets },
      });
      const problems = describeViolations(report);
      assert.deepEqual(problems, [], `invariants (unsettled: ${JSON.stringify(unsettled)})`);
      assert.ok(armed.fired, `the fault fired: ${describeFault(cell.fault, faulty.id)}`);

      const result = run.targets[FAULTY]!.result!;
      for (const t of run.targets) {
        if (t.id !== faulty.id) assert.equal(t.result?.outcome, 'updated', `healthy ${t.id}: ${JSON.stringify(t.result)}`);
      }
      // files agree with the outcome (accounted for above); say it plainly for this cell too
      const boot = report.devices.get(faulty.id)!;
      assert.equal(boot.version, result.outcome === 'updated' ? '1.1.0' : '1.0.0', `${faulty.id} boots what its result says`);
      const { chunks, badChunks, powerCuts, drops } = faulty.stats;
      cell.expect({ run, events, result, fired: armed.fired, stats: { chunks, badChunks, powerCuts, drops } });
    });
  }
});
