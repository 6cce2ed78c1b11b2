import { accessSync, constants } from 'node:fs';
import { resolve } from 'node:path';
import { FwError } from '../protocol/errors.ts';
import { DEFAULT_COMPONENT, componentName } from '../protocol/release.ts';
import { MAX_COMPONENTS } from '../protocol/limits.ts';
import { isValidVersion } from '../protocol/version.ts';
import { parseSelector, type DeviceSelector, type Faults } from './faults.ts';

/**
 * fwsim's component flags (docs/device-sim.md "Components"): `--components app,net[,agent]`,
 * `--component-image [who:]comp=file`, `--component-version [who:]comp=version`,
 * `--fail-selftest-component [who:]comp`, `--power-cut-component [who:]comp`. Without `who:` a
 * flag applies to every device of the fleet.
 */
export interface ComponentRule {
  who: DeviceSelector;
  images: Record<string, string>;
  versions: Record<string, string>;
}

export interface ComponentFlags {
  components?: string[];
  perDevice: ComponentRule[];
  faults: { who: DeviceSelector; faults: Faults }[];
}

interface Raw {
  components?: string;
  componentImage?: string[];
  componentVersion?: string[];
  failSelftestComponent?: string;
  powerCutComponent?: string;
}

export function componentFlags(o: Raw, count: number): ComponentFlags {
  const components = o.components === undefined ? undefined : parseComponents(o.components);
  const known = components ?? [DEFAULT_COMPONENT];
  const all: DeviceSelector = { first: count };
  /** "[who:]comp" → who and a component the devices have. */
  const target = (text: string, flag: string): { who: DeviceSelector; component: string } => {
    const i = text.lastIndexOf(':');
    const who = i > 0 ? parseSelector(text.slice(0, i), flag) : all;
    const component = text.slice(i + 1);
    if (!componentName.safeParse(component).success) throw new FwError('E_USAGE', `${flag}: "${component}" is not a component name (lowercase letters, digits, "-")`);
    if (!known.includes(component)) throw new FwError('E_USAGE', `${flag}: the devices have no component "${component}" (--components ${known.join(',')})`);
    return { who, component };
  };
  const assignment = (text: string, flag: string): { who: DeviceSelector; component: string; value: string } => {
    const eq = text.indexOf('=');
    if (eq <= 0 || eq === text.length - 1) throw new FwError('E_USAGE', `${flag}: expected [who:]component=value, got "${text}"`);
    return { ...target(text.slice(0, eq), flag), value: text.slice(eq + 1) };
  };
  const perDevice: ComponentRule[] = [];
  for (const text of o.componentImage ?? []) {
    const a = assignment(text, '--component-image');
    const path = resolve(a.value);
    try {
      accessSync(path, constants.R_OK);
    } catch (err) {
      throw new FwError('E_USAGE', `--component-image: cannot read ${path}: ${(err as Error).message}`);
    }
    perDevice.push({ who: a.who, images: { [a.component]: path }, versions: {} });
  }
  for (const text of o.componentVersion ?? []) {
    const a = assignment(text, '--component-version');
    if (!isValidVersion(a.value)) throw new FwError('E_USAGE', `--component-version: "${a.value}" is not a semantic version such as 1.4.0`);
    perDevice.push({ who: a.who, images: {}, versions: { [a.component]: a.value } });
  }
  const faults: ComponentFlags['faults'] = [];
  if (o.failSelftestComponent !== undefined) {
    const t = target(o.failSelftestComponent, '--fail-selftest-component');
    faults.push({ who: t.who, faults: { failSelfTestComponent: t.component } });
  }
  if (o.powerCutComponent !== undefined) {
    const t = target(o.powerCutComponent, '--power-cut-component');
    faults.push({ who: t.who, faults: { powerCutComponent: t.component } });
  }
  return { ...(components !== undefined ? { components } : {}), perDevice, faults };
}

/** "app,net,agent" → the list; `app` must be in it, no repeats. */
export function parseComponents(text: string): string[] {
  const list = text.split(',').map((s) => s.trim());
  for (const c of list) {
    if (!componentName.safeParse(c).success) throw new FwError('E_USAGE', `--components: "${c}" is not a component name (lowercase letters, digits, "-", starting with a letter)`);
  }
  if (!list.includes(DEFAULT_COMPONENT)) throw new FwError('E_USAGE', `--components: must include ${DEFAULT_COMPONENT} (got ${text})`);
  const twice = list.find((c, i) => list.indexOf(c) !== i);
  if (twice !== undefined) throw new FwError('E_USAGE', `--components: "${twice}" given twice`);
  if (list.length > MAX_COMPONENTS) throw new FwError('E_USAGE', `--components: at most ${MAX_COMPONENTS} components, got ${list.length}`);
  return list;
}
