import type { UplinkDeps } from '../../gateway/uplink/session.ts';

/** The campaign requests of an uplink session (§7.3.7, §7.12), for tests that do not use them: counts of nothing, everything else refused. */
export const noCampaignControl: Pick<UplinkDeps, 'preflight' | 'cancel' | 'retry' | 'resume' | 'plan'> = {
  preflight: () => Promise.resolve({ eligibleOnline: 0, eligibleOffline: 0, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 0 }),
  cancel: (): string => { throw new Error('not in these tests'); },
  retry: () => Promise.reject(new Error('not in these tests')),
  resume: (): void => { throw new Error('not in these tests'); },
  plan: () => Promise.reject(new Error('not in these tests')),
};
