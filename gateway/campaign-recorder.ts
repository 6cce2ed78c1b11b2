import { describeError } from '../protocol/errors.ts';
import type { CompleteMessage, GatewayUplinkMessage, ResultMessage } from '../protocol/uplink.ts';
import type { GatewayConfig } from './config.ts';
import { pausedMessage } from './disk-full.ts';
import type { Logger } from './log.ts';
import type { Campaign } from './rollout/campaign.ts';
import { DurableSteps } from './rollout/durable-steps.ts';
import type { CampaignJournal, JournalRecord } from './rollout/journal.ts';
import type { Timers } from './waiter.ts';

export interface RecorderDeps {
  config: GatewayConfig;
  timers: Timers;
  log: Logger;
  /** The laptop's session, when one is attached. */
  uplink(): { notify(msg: GatewayUplinkMessage): void } | undefined;
  /** A campaign's journal was closed complete (retention may remove old ones). */
  onClosed(): void;
}

/**
 * The campaigns' journals and what reaches the laptop in their order (docs/reliability.md): every
 * campaign event is recorded, `activate` waits for its record to be durable, and the order, each
 * result and the completion go to the laptop only once their record is durable, in event order.
 * While the disk refuses records the campaign is paused (gateway/rollout/durable-steps.ts).
 */
export class CampaignRecorder {
  private readonly journals = new Map<Campaign, CampaignJournal>();
  /** Per campaign: its steps wait for their records, pausing while the disk refuses them (issue 17.4). */
  private readonly durableSteps = new Map<Campaign, DurableSteps>();
  /** Results and completions whose journal record is not durable yet: not reported (nor replayed) until it is. */
  private readonly notDurable = new Set<ResultMessage | CompleteMessage>();
  /** Campaign messages for the laptop, in event order, while some wait for their journal record. */
  private uplinkQueue: Promise<void> = Promise.resolve();
  private uplinkQueued = 0;

  constructor(private readonly deps: RecorderDeps) {}

  /** Resolves once every campaign message handed to the laptop so far is out. */
  get flushed(): Promise<void> {
    return this.uplinkQueue;
  }

  /** Whether a result or completion's record is durable (only then is it replayed). */
  isDurable(msg: ResultMessage | CompleteMessage): boolean {
    return !this.notDurable.has(msg);
  }

  /** The campaign's pause state while its journal waits for the disk (disk-full.ts pausedReplay). */
  steps(campaign: Campaign): DurableSteps | undefined {
    return this.durableSteps.get(campaign);
  }

  /** Close a campaign that never ran with this completion (a superseded queued campaign). */
  closeWith(campaign: Campaign, complete: CompleteMessage): void {
    const journal = this.journals.get(campaign);
    journal?.append({ r: 'complete', complete });
    journal?.close();
    this.journals.delete(campaign);
  }

  /** Detach every journal (a clean stop: the campaigns resume at the next start, as after a crash). */
  detachAll(): void {
    for (const j of this.journals.values()) j.close();
    this.journals.clear();
  }

  /**
   * Record the campaign's steps in its journal (docs/reliability.md): the order, each device's
   * activation before it is sent (the `activating` phase is reported synchronously; the session
   * then awaits `durableFor` before the `activate` message goes out), how much of the image a
   * device holds (at most every eighth of the image; hints, not made durable), results and the
   * completion. Records are written at once and group-committed off the event loop; the order,
   * each result and the completion are forwarded to the laptop only once durable.
   */
  record(campaign: Campaign, journal: CampaignJournal): void {
    this.journals.set(campaign, journal);
    const step = Math.max(1, Math.ceil(campaign.size / 8));
    const heldAt = new Map<string, number>();
    const append = (rec: JournalRecord, durable = true): Promise<void> => {
      if (this.journals.get(campaign) !== journal) return Promise.resolve(); // detached at shutdown: the campaign resumes at the next start
      try {
        // a record the disk refused is kept and written once it takes it again; what waits for it waits on
        return journal.record(rec, durable).catch((err: unknown) => {
          this.journalFailed(campaign, rec, err);
          return this.durableFor(campaign);
        });
      } catch (err) {
        this.journalFailed(campaign, rec, err);
        return Promise.resolve();
      }
    };
    const reported = (msg: ResultMessage | CompleteMessage, durable: Promise<void>): void => {
      this.notDurable.add(msg);
      this.forward(msg, durable.finally(() => this.notDurable.delete(msg)));
    };
    campaign.on('order', (order) => this.forward(order, append({ r: 'order', order })));
    campaign.on('progress', (p) => {
      if (p.phase === 'activating') void append({ r: 'activating', id: p.id }); // awaited by the session (durableFor)
      else if (p.phase === 'transferring' && p.bytes - (heldAt.get(p.id) ?? 0) >= step) {
        heldAt.set(p.id, p.bytes);
        void append({ r: 'held', id: p.id, bytes: p.bytes }, false); // a hint: the device knows what it holds
      }
    });
    campaign.on('result', (result) => reported(result, append({ r: 'result', result })));
    campaign.on('state', (st) => void append({ r: 'state', at: Date.now(), ...st }));
    campaign.on('complete', (complete) => {
      const durable = append({ r: 'complete', complete });
      reported(complete, durable);
      // closed once every record is written and durable (records the disk refused are retried until then)
      void durable.then(() => this.durableFor(campaign)).finally(() => {
        if (this.journals.get(campaign) !== journal) return; // detached at shutdown
        journal.close();
        this.journals.delete(campaign);
        this.deps.onClosed(); // retention (storage.keepCampaigns): never an unfinished campaign's journal
      });
    });
  }

  /**
   * Resolves once every record of the campaign's journal so far is durable (at once when
   * detached). While the disk refuses them the campaign is paused (gateway/rollout/durable-steps.ts):
   * said once to the log and the laptop, tried again every `rollout.journalRetryMs`.
   */
  durableFor(campaign: Campaign): Promise<void> {
    const journal = this.journals.get(campaign);
    if (!journal) return Promise.resolve();
    let steps = this.durableSteps.get(campaign);
    if (!steps) {
      const retryMs = this.deps.config.rollout.journalRetryMs;
      steps = new DurableSteps({
        durable: () => journal.durable(), timers: this.deps.timers, retryMs,
        stopped: () => this.journals.get(campaign) !== journal,
        onPause: (reason, err) => {
          this.deps.log.error({ campaign: campaign.id, err: describeError(err), retryMs }, `campaign paused: ${reason}; no device is activated until its journal records are durable`);
          this.notifyNow(pausedMessage(campaign.id, reason, retryMs)); // not behind the results that wait for the disk
        },
        onResume: (pausedMs) => this.deps.log.warn({ campaign: campaign.id, pausedMs: Math.round(pausedMs) }, 'campaign resumed: its journal is durable again'),
      });
      this.durableSteps.set(campaign, steps);
      campaign.once('complete', () => this.durableSteps.delete(campaign));
    }
    return steps.settle();
  }

  notifyNow(msg: GatewayUplinkMessage): void {
    try {
      this.deps.uplink()?.notify(msg);
    } catch (err) {
      this.deps.log.warn({ err: describeError(err), t: msg.t }, 'message not forwarded');
    }
  }

  /**
   * Hand a campaign message to the uplink: at once, unless it must wait for its journal record
   * (`after`) or an earlier message still waits — messages go out in the order of the events.
   */
  forward(msg: GatewayUplinkMessage, after?: Promise<void>): void {
    const send = (): void => {
      try {
        this.deps.uplink()?.notify(msg);
      } catch (err) {
        this.deps.log.warn({ err: describeError(err), t: msg.t }, 'campaign message not forwarded');
      }
    };
    if (!after && this.uplinkQueued === 0) return send();
    this.uplinkQueued++;
    this.uplinkQueue = this.uplinkQueue.then(() => after).then(send).finally(() => { this.uplinkQueued--; });
  }

  private journalFailed(campaign: Campaign, rec: JournalRecord, err: unknown): void {
    this.deps.log.error({ campaign: campaign.id, err: describeError(err), record: rec.r }, 'campaign journal append failed');
  }
}
