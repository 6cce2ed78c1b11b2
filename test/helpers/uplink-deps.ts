import { EventEmitter } from 'node:events';
import type { UplinkDeps } from '../../gateway/uplink/session.ts';
import type { GatewayUplinkMessage } from '../../protocol/uplink.ts';

/** The gateway's end of the serial link for an UplinkSession under test: records what it sends and each ARQ reconfiguration. */
export class FakeUplinkLink extends EventEmitter {
  readonly sent: GatewayUplinkMessage[] = [];
  down = false;
  async send(m: GatewayUplinkMessage): Promise<void> {
    this.sent.push(m);
  }
  readonly configured: Record<string, number>[] = [];
  configure(p: Record<string, number>): void {
    this.configured.push(p);
  }
  readonly arq = { configure: (p: Record<string, number>): void => this.configure(p) };
  async flush(): Promise<void> {}
  last(): GatewayUplinkMessage | undefined {
    return this.sent.at(-1);
  }
}

/** The campaign requests of an uplink session (§7.3.7, §7.12), for tests that do not use them: counts of nothing, everything else refused. */
export const noCampaignControl: Pick<UplinkDeps, 'preflight' | 'cancel' | 'retry' | 'resume' | 'plan'> = {
  preflight: () => Promise.resolve({ eligibleOnline: 0, eligibleOffline: 0, notNewer: 0, otherHw: 0, belowFloor: 0, busy: 0, notTargeted: 0 }),
  cancel: (): string => { throw new Error('not in these tests'); },
  retry: () => Promise.reject(new Error('not in these tests')),
  resume: (): void => { throw new Error('not in these tests'); },
  plan: () => Promise.reject(new Error('not in these tests')),
};
