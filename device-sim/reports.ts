import type { BootComponent, ComponentStatus, StatusMessage } from '../protocol/ota.ts';
import type { BootedComponent } from './bootloader.ts';
import { AGENT, componentNames, componentOf, type SlotRecord, type SlotStateRecord } from './state-record.ts';

/**
 * What a multi-component device reports about its components (docs/protocol.md §6.3.3, §6.9.2):
 * `status.components` and `boot.components`, `app` first. A single-image device sends neither.
 */

export const slotInfo = (r: SlotRecord): StatusMessage['slots']['a'] => ({
  state: r.state,
  ...(r.version !== undefined ? { version: r.version } : {}),
  ...(r.sha256 !== undefined ? { sha256: r.sha256 } : {}),
});

/** Every component as `status` lists it: running version and digest, slot, both slots, trial; `agent` marked. */
export function statusComponents(rec: SlotStateRecord): ComponentStatus[] {
  return componentNames(rec).map((name) => {
    const c = componentOf(rec, name);
    const running = c.slots[c.active];
    return {
      name, layout: 'ab', version: running.version ?? '0.0.0',
      ...(running.sha256 !== undefined ? { sha256: running.sha256 } : {}),
      slot: c.active, slots: { a: slotInfo(c.slots.a), b: slotInfo(c.slots.b) }, trial: c.trial,
      ...(name === AGENT ? { agent: true as const } : {}),
    };
  });
}

/** Every component as booted, for `boot.components`. */
export function bootComponents(booted: readonly BootedComponent[]): BootComponent[] {
  return booted.map((c) => ({ name: c.name, version: c.version, sha256: c.sha256, slot: c.slot, trial: c.trial }));
}
