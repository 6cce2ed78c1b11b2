/**
 * Network namespaces for the simulated rig (docs/hil.md "Kernel-shaped links"): each simulated
 * board in its own namespace, joined by a veth pair to one bridge on the host that carries the
 * gateway's address, with a tc token-bucket filter (tbf) on each side — so a board's bandwidth is
 * limited by the kernel, not by our own code. (tc netem is not available on every machine, so
 * delay, jitter and loss, if wanted, come from fwsim's shaping proxy, `--profile` — sim-netns.json
 * adds none: its links are kernel rate limits only.) Pure: these functions only
 * say which `ip` / `tc` commands to run; hil/sim-device.ts runs them.
 */

/** The host bridge and the gateway's address on it. */
export const BRIDGE = 'fwhil0';
export const GATEWAY_ADDRESS = '10.77.0.1';
const PREFIX = 16;
export const MAX_NETNS_DEVICES = 256;

export interface NetnsDevice {
  /** The board's namespace. */
  ns: string;
  /** The veth end on the host (on the bridge) and the one in the namespace. */
  hostIf: string;
  nsIf: string;
  /** The board's address in its namespace. */
  address: string;
}

/** Names and address of the board at `index` (0-based position in the rig file). */
export function netnsDevice(index: number): NetnsDevice {
  if (!Number.isInteger(index) || index < 0 || index >= MAX_NETNS_DEVICES) throw new RangeError(`device index must be 0..${MAX_NETNS_DEVICES - 1}, got ${index}`);
  return {
    ns: `fwhil-${index}`, hostIf: `fwh${index}a`, nsIf: `fwh${index}b`,
    address: `10.77.${1 + Math.floor(index / 200)}.${2 + (index % 200)}`,
  };
}

/** A tc rate (`2mbit`, `500kbit`, `1gbit`) — what tc accepts, checked before it is run. */
export function isTcRate(v: string): boolean {
  return /^\d+(\.\d+)?(bit|kbit|mbit|gbit)$/.test(v);
}

/** tbf for a rate: a burst of at least 10 ms at the rate (and one full-size frame), 200 ms of queue. */
function tbf(dev: string, rate: string): string[] {
  return ['tc', 'qdisc', 'replace', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', burstFor(rate), 'latency', '200ms'];
}

export function burstFor(rate: string): string {
  const m = /^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit)$/.exec(rate);
  if (!m) throw new RangeError(`not a tc rate: ${rate}`);
  const bits = Number(m[1]) * { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[m[2] as 'bit'];
  return `${Math.max(1600, Math.ceil(bits / 8 / 100))}b`;
}

/** The bridge with the gateway's address (once per run, before the gateway starts). */
export function bridgeUp(): string[][] {
  return [
    ['ip', 'link', 'add', BRIDGE, 'type', 'bridge'],
    ['ip', 'addr', 'add', `${GATEWAY_ADDRESS}/${PREFIX}`, 'dev', BRIDGE],
    ['ip', 'link', 'set', BRIDGE, 'up'],
  ];
}

/** A board's namespace, veth pair and rate limits; `down` is gateway -> board, `up` board -> gateway. */
export function deviceUp(d: NetnsDevice, rates: { down?: string; up?: string }): string[][] {
  const inNs = (cmd: string[]): string[] => ['ip', 'netns', 'exec', d.ns, ...cmd];
  return [
    ['ip', 'netns', 'add', d.ns],
    ['ip', 'link', 'add', d.hostIf, 'type', 'veth', 'peer', 'name', d.nsIf],
    ['ip', 'link', 'set', d.nsIf, 'netns', d.ns],
    ['ip', 'link', 'set', d.hostIf, 'master', BRIDGE],
    ['ip', 'link', 'set', d.hostIf, 'up'],
    inNs(['ip', 'addr', 'add', `${d.address}/${PREFIX}`, 'dev', d.nsIf]),
    inNs(['ip', 'link', 'set', d.nsIf, 'up']),
    inNs(['ip', 'link', 'set', 'lo', 'up']),
    ...(rates.down ? [tbf(d.hostIf, rates.down)] : []),
    ...(rates.up ? [inNs(tbf(d.nsIf, rates.up))] : []),
  ];
}

/** Everything a run made: the namespaces (their veth pairs go with them) and the bridge. */
export function teardown(namespaces: readonly string[]): string[][] {
  return [...namespaces.map((ns) => ['ip', 'netns', 'del', ns]), ['ip', 'link', 'del', BRIDGE]];
}
