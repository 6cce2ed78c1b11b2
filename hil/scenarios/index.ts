import type { Scenario } from '../scenario.ts';
import { gatewayRestart } from './gateway-restart.ts';
import { laptopUnplug } from './laptop-unplug.ts';
import { deviceOffline } from './offline.ts';
import { powerCutActivation, powerCutBeforeConfirm, powerCutFirstBoot, powerCutTransfer } from './power-cuts.ts';
import { badImage, happyPath } from './rollout.ts';

/** The suite, in the order it runs (docs/hil.md "Scenarios"). */
export const SCENARIOS: readonly Scenario[] = [
  happyPath, powerCutTransfer, powerCutActivation, powerCutFirstBoot, powerCutBeforeConfirm,
  badImage, deviceOffline, gatewayRestart, laptopUnplug,
];
