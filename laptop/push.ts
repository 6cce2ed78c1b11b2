import { FwError, isFwError } from '../protocol/errors.ts';
import type { Manifest } from '../protocol/manifest.ts';
import type { CompleteMessage, GatewayUplinkMessage, QueuedInfo, StateMessage, WaitingMessage } from '../protocol/uplink.ts';
import type { CampaignOptions, UplinkClient } from './client.ts';
import type { Connection } from './connection.ts';
import type { LinkNotice, RunPhase } from './notices.ts';
import type { Reconnecting } from './reconnect.ts';

export interface FlowDeps {
  session: Reconnecting<Connection>;
  notify(n: LinkNotice): void;
  /** Longest silence while reading the replay of a finished campaign. */
  replayIdleMs: number;
}

/** How a followed campaign ended: its completion, or undefined when a replay ended without one. */
export interface Followed {
  campaign: string;
  complete: CompleteMessage | undefined;
  /** The campaign waits for a maintenance window (`committed.queued`, §7.4.5): it was not followed. */
  queued?: QueuedInfo;
  /** Followed until only devices waiting for their check-in were left (§7.6.4): the gateway carries on. */
  waiting?: WaitingMessage;
}

/** A followed campaign's end: its completion, or its `waiting`. */
export function ended(campaign: string, end: CompleteMessage | WaitingMessage): Followed {
  return end.t === 'complete' ? { campaign, complete: end } : { campaign, complete: undefined, waiting: end };
}

/**
 * Push an image and follow its campaign: request to send -> upload from the granted offset ->
 * commit -> follow. After a lost link the session reconnects and this goes on from where it
 * was: before the commit, a new request to send, whose grant says what the gateway already holds
 * (keyed by the image digest); after it, `status` (state and replay) and the campaign followed
 * again, as `fwpush status` does. A campaign the gateway queues for a maintenance window is not
 * followed: this resolves with its `queued` at once.
 */
export async function pushAndFollow(d: FlowDeps, manifest: Manifest, image: Uint8Array, options: CampaignOptions = {}): Promise<Followed> {
  let campaign: string | undefined;
  let commitSent = false;
  return d.session.run(() => (campaign === undefined ? 'upload' : 'follow'), async (conn, again) => {
    const { client } = conn;
    if (campaign !== undefined) return follow(client, await client.status(), campaign, d, conn);
    let grant;
    try {
      grant = await client.requestToSend(manifest, options);
    } catch (err) {
      // The commit may have landed just before the link went: a campaign of this very image
      // running now is ours (a request to send is refused while any campaign runs).
      if (!(again && commitSent && isFwError(err) && err.details?.deny === 'busy')) throw err;
      const state = await client.status();
      if (!state.running || !state.campaign || state.image?.sha256 !== manifest.sha256) throw err;
      campaign = state.campaign;
      return ended(campaign, await client.followUntilWaiting(campaign));
    }
    if (again) d.notify({ event: 'upload-resumed', sha256: manifest.sha256, offset: grant.offset, size: manifest.size });
    await client.upload(image, grant);
    commitSent = true;
    const committed = await client.commit();
    campaign = committed.campaign;
    if (committed.queued) return { campaign, complete: undefined, queued: committed.queued };
    return ended(campaign, await client.followUntilWaiting(campaign));
  });
}

/**
 * `fwpush status`: ask for the gateway's state; a running campaign is followed to its end, a
 * finished one read from its replay. Resolves with the state and, when there is a campaign, how
 * it ended. After a lost link the same campaign is asked for again.
 */
export async function statusAndFollow(d: FlowDeps, named?: string): Promise<{ state: StateMessage; followed: Followed | undefined }> {
  let campaign: string | undefined = named;
  return d.session.run(() => 'follow' as RunPhase, async (conn) => {
    const state = await conn.client.status(named);
    if (!state.campaign) return { state, followed: undefined };
    campaign ??= state.campaign;
    return { state, followed: await follow(conn.client, state, campaign, d, conn) };
  });
}

/** Follow the campaign a `state` names, which must be `expected`: live while it runs, else its replay. */
export async function follow(client: UplinkClient, state: StateMessage, expected: string, d: FlowDeps, conn: Connection): Promise<Followed> {
  if (state.campaign !== expected) {
    throw new FwError('E_UPLINK_STATE', `campaign ${expected} is no longer the gateway's current or last campaign (it reports ${state.campaign ?? 'none'})`);
  }
  if (state.running) return ended(expected, await client.followUntilWaiting(expected));
  try {
    return ended(expected, await client.followUntilWaiting(expected, d.replayIdleMs));
  } catch (err) {
    if (!isFwError(err, 'E_LINK_TIMEOUT') || conn.lost) throw err;
    return { campaign: expected, complete: undefined }; // it ended without a completion: what was replayed is all there is
  }
}

/**
 * Drops what a replay after a reconnect repeats (an order, a result or a completion already
 * seen), so the output and the summary show each once. Everything else passes.
 */
export class SeenEvents {
  private readonly seen = new Set<string>();

  fresh(m: GatewayUplinkMessage): boolean {
    let key: string;
    switch (m.t) {
      case 'order': key = `order ${m.campaign}`; break;
      case 'result': key = `result ${m.campaign} ${m.id} ${m.outcome}`; break;
      case 'complete': key = `complete ${m.campaign}`; break;
      default: return true;
    }
    if (this.seen.has(key)) return false;
    this.seen.add(key);
    return true;
  }
}
