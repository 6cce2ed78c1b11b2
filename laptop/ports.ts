import { readdir, realpath } from 'node:fs/promises';
import { join } from 'node:path';

/** A serial port as fwpush shows it (serialport's list, with its /dev/serial/by-id name). */
export interface PortInfo {
  path: string;
  /** Stable name from udev (/dev/serial/by-id/...), when there is one. */
  byId?: string;
  /** USB vendor and product id, hex (e.g. 0403:6001), for USB adapters. */
  usb?: string;
  manufacturer?: string;
  serialNumber?: string;
}

interface ListedPort { path: string; manufacturer?: string | undefined; serialNumber?: string | undefined; vendorId?: string | undefined; productId?: string | undefined }

/** Known USB-serial chips, by vendor id: FTDI, Silicon Labs CP210x, WCH CH340/CH341, Prolific. */
const USB_SERIAL_VENDORS: Record<string, string> = { '0403': 'FTDI', '10c4': 'CP210x', '1a86': 'CH340', '067b': 'Prolific' };

/**
 * The ports of this machine: serialport's list, joined with the /dev/serial/by-id links (udev's
 * stable names). `list` and `byIdDir` are injected for tests.
 */
export async function listPorts(
  list: () => Promise<ListedPort[]> = async () => (await import('serialport')).SerialPort.list(),
  byIdDir = '/dev/serial/by-id',
): Promise<PortInfo[]> {
  const ports = await list();
  const byId = new Map<string, string>();
  try {
    for (const name of await readdir(byIdDir)) {
      const target = await realpath(join(byIdDir, name)).catch(() => undefined);
      if (target) byId.set(target, join(byIdDir, name));
    }
  } catch { /* no by-id directory: no USB serial adapter plugged in, or no udev */ }
  return ports.map((p) => ({
    path: p.path,
    ...(byId.has(p.path) ? { byId: byId.get(p.path)! } : {}),
    ...(p.vendorId ? { usb: `${p.vendorId.toLowerCase()}:${(p.productId ?? '????').toLowerCase()}` } : {}),
    ...(p.manufacturer ? { manufacturer: p.manufacturer } : {}),
    ...(p.serialNumber ? { serialNumber: p.serialNumber } : {}),
  })).sort((a, b) => (a.path < b.path ? -1 : 1));
}

/** A port that is probably the technician's USB-serial adapter: USB (vendor id known to serialport) or a by-id name; not a built-in ttyS. */
export function isLikelyAdapter(p: PortInfo): boolean {
  return p.usb !== undefined || p.byId !== undefined || /\/tty(USB|ACM)\d+$/.test(p.path);
}

export function describePort(p: PortInfo): string {
  const chip = p.usb ? USB_SERIAL_VENDORS[p.usb.slice(0, 4)] ?? (p.path.includes('ACM') ? 'CDC-ACM' : undefined) : undefined;
  return [p.path, p.byId ? `(${p.byId})` : '', p.usb ? `usb ${p.usb}` : '', chip ?? '', p.manufacturer ?? ''].filter(Boolean).join(' ');
}

/** `fwpush ports`: a table (or JSON), likely adapters marked. */
export function portsTable(ports: PortInfo[]): string[] {
  if (ports.length === 0) return ['no serial ports found (plug in the USB-serial adapter; `dmesg | tail` shows whether the kernel saw it)'];
  const head = ['', 'port', 'by-id', 'usb', 'manufacturer', 'serial'];
  const rows = ports.map((p) => [isLikelyAdapter(p) ? '*' : '', p.path, p.byId ?? '-', p.usb ?? '-', p.manufacturer ?? '-', p.serialNumber ?? '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (c: string[]): string => c.map((x, i) => x.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(head), ...rows.map(line), '', '* a likely USB-serial adapter: with exactly one, fwpush uses it when --port is left out'];
}
