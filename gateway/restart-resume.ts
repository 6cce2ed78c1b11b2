/**
 * After a restart (a crash, `kill -9`, a power cut, or a clean stop mid-campaign): every campaign
 * whose journal has no completion is resumed, oldest first, with the policy and expiry its journal
 * recorded (a queued window campaign waits for its window again). What was read back from disk is
 * checked again before it is used: the image must still be stored, the journal's manifest must
 * name that image and be trusted, a release must match the campaign's digest. A campaign that
 * cannot resume is closed in its journal with the results it had, and logged (§7.8.2).
 */
import { join } from 'node:path';
import { describeError } from '../protocol/errors.ts';
import type { CompleteMessage } from '../protocol/uplink.ts';
import type { Manifest } from '../protocol/manifest.ts';
import { releaseDigest, type ReleaseManifest } from '../protocol/release.ts';
import type { KeyRing } from '../protocol/signature.ts';
import type { GatewayConfig } from './config.ts';
import type { Logger } from './log.ts';
import { closedCompletion, imageGoneReason } from './rollout/closed-campaign.ts';
import { CampaignJournal, findUnfinished, type UnfinishedCampaign } from './rollout/journal.ts';
import type { Campaign } from './rollout/campaign.ts';
import type { ImageStore, StoredImage } from './store.ts';
import { manifestDistrust } from './trust.ts';

export interface ResumeDeps {
  journalDir: string;
  store: ImageStore;
  keyRing: KeyRing;
  config: GatewayConfig;
  log: Logger;
  prepareCampaign: (image: StoredImage, resume: UnfinishedCampaign) => Promise<{ campaign: Campaign; start: () => void }>;
  prepareRelease: (release: ReleaseManifest, resume: UnfinishedCampaign) => Promise<{ campaign: Campaign; start: () => void }>;
  /** Receives the completion of each campaign closed here (what `status` replays when nothing else ran since). */
  closed: CompleteMessage[];
}

export async function resumeUnfinished(deps: ResumeDeps): Promise<void> {
  const { log } = deps;
  for (const u of findUnfinished(deps.journalDir, (msg) => log.warn(msg))) {
    if (u.state.release) {
      await resumeRelease(deps, u, u.state.release);
      continue;
    }
    const stored = deps.store.get(u.state.sha256);
    if (!stored) {
      closeJournal(deps, u, imageGoneReason(join(deps.config.dataDir, 'store'), u.state.sha256));
      continue;
    }
    // the journal's manifest is the campaign's release; it is read back from disk, so it is checked again
    const m: Manifest | undefined = u.state.manifest;
    const distrust = m ? (m.sha256 !== u.state.sha256 ? `its manifest names image ${m.sha256}, not ${u.state.sha256}` : manifestDistrust(deps.keyRing, deps.config.security.allowUnsigned, m)) : undefined;
    if (distrust !== undefined) {
      closeJournal(deps, u, `its journal's manifest is not trusted (${distrust})`);
      continue;
    }
    let prepared: { campaign: Campaign; start: () => void };
    try {
      prepared = await deps.prepareCampaign(m ? { ...stored, manifest: m } : stored, u);
    } catch (err) {
      closeJournal(deps, u, describeError(err));
      continue;
    }
    const { campaign, start } = prepared;
    const image = campaign.image;
    log.info({ campaign: campaign.id, image: image.manifest.version, policy: u.state.policy?.mode ?? 'now', results: u.state.results.size, records: u.state.records }, 'resuming an unfinished campaign');
    start();
  }
}

/** resumeUnfinished for a release campaign: its release manifest is checked again (identity, signature, images held). */
async function resumeRelease(deps: ResumeDeps, u: UnfinishedCampaign, release: ReleaseManifest): Promise<void> {
  if (releaseDigest(release) !== u.state.sha256) {
    closeJournal(deps, u, `its journal's release does not match the campaign's release digest ${u.state.sha256}`);
    return;
  }
  try {
    const { campaign, start } = await deps.prepareRelease(release, u);
    deps.log.info({ campaign: campaign.id, release: release.release, version: release.version, results: u.state.results.size }, 'resuming an unfinished release campaign');
    start();
  } catch (err) {
    closeJournal(deps, u, describeError(err));
  }
}

/** Write the completion of a campaign that will not resume, with the results its journal has and why (§7.8.2). */
function closeJournal(deps: ResumeDeps, u: UnfinishedCampaign, why: string): void {
  const complete = closedCompletion(u, why);
  const journal = CampaignJournal.reopen(u.path, u.validBytes);
  try {
    journal.append({ r: 'state', state: 'halted', at: Date.now(), reason: why });
    journal.append({ r: 'complete', complete });
  } finally {
    journal.close();
  }
  deps.closed.push(complete);
  deps.log.error({ campaign: u.state.id, results: complete.devices }, `unfinished campaign not resumed: ${why}; closed with the results it had`);
}
