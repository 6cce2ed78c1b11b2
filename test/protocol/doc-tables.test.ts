import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../../gateway/config.ts';
import { DEVICE_DEFAULTS } from '../../device-sim/options.ts';
import { laptopSettings } from '../../laptop/settings.ts';
import { ErrorCodes } from '../../protocol/errors.ts';
import * as limitsModule from '../../protocol/limits.ts';
import { DATA_MESSAGE_OVERHEAD } from '../../protocol/uplink.ts';
import {
  DEFAULT_ACK_EVERY, DEFAULT_MAX_RETRANSMITS, DEFAULT_RTO_INITIAL_MS, DEFAULT_RTO_MAX_MS, DEFAULT_RTO_MIN_MS, DEFAULT_SEND_PAYLOAD, DEFAULT_WINDOW,
} from '../../protocol/link/constants.ts';

/**
 * The defaults and limits tables of docs/protocol.md (§1.6, §4.10, §8.3, §9) compared cell by
 * cell with the code: each row's key cell names the setting, its value cell is parsed (numbers,
 * `a / b` pairs, true/false, `[]`, none) and must equal the code's value. A row that only mentions
 * the value somewhere (a clause number, another column) does not pass.
 */

/** The §1.6 limits: protocol/limits.ts, and the uplink's data envelope reserve (kept with the uplink codec). */
const limits = { ...limitsModule, DATA_MESSAGE_OVERHEAD };

const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');

/** The rows (cells, trimmed) of the first table after the heading that starts with `heading`. */
export function tableAfter(markdown: string, heading: string): string[][] {
  const lines = markdown.split('\n');
  const at = lines.findIndex((l) => /^#+ /.test(l) && l.replace(/^#+ /, '').startsWith(heading));
  assert.ok(at >= 0, `docs/protocol.md has a heading "${heading}"`);
  let i = at + 1;
  while (i < lines.length && !lines[i]!.startsWith('|')) {
    assert.ok(!/^#+ /.test(lines[i]!), `a table follows "${heading}" before the next heading`);
    i++;
  }
  const rows: string[][] = [];
  for (; i < lines.length && lines[i]!.startsWith('|'); i++) rows.push(splitRow(lines[i]!));
  assert.ok(rows.length >= 3, `the table after "${heading}" has a header, a rule and rows`);
  assert.match(rows[1]!.join('|'), /^[-:|]+$/, `the second row of the table after "${heading}" is its rule`);
  return rows.slice(2);
}

/** Cells of one table row; `|` inside backticks is text, not a separator. */
function splitRow(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let code = false;
  for (const ch of line.slice(1, line.endsWith('|') ? -1 : undefined)) {
    if (ch === '`') code = !code;
    if (ch === '|' && !code) {
      cells.push(cell.trim());
      cell = '';
    } else cell += ch;
  }
  cells.push(cell.trim());
  return cells;
}

/** The backticked names of a key cell: "`a` / `b`" -> ['a', 'b']. */
function names(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);
}

/**
 * A value cell as values: "64 / 65536" -> [64, 65536]; "4294967295 (2^32 − 1)" -> [4294967295];
 * "true with `devicesFile`, else false" -> ['true with ...'] (not a plain value: compared as text).
 */
export function cellValues(cell: string): unknown[] {
  const plain = cell.replace(/\s*\([^)]*\)\s*$/, '').trim();
  return plain.split(' / ').map((part) => parseValue(part.trim()));
}

function parseValue(text: string): unknown {
  const unquoted = text.replace(/^`(.*)`$/, '$1');
  if (/^-?\d+(\.\d+)?$/.test(unquoted)) return Number(unquoted);
  if (unquoted === 'true') return true;
  if (unquoted === 'false') return false;
  if (unquoted === '[]') return [];
  if (unquoted === 'none') return undefined;
  return unquoted;
}

describe('docs/protocol.md tables: values compared with the code, cell by cell', () => {
  describe('the parser itself', () => {
    it('splits rows, keeps | inside backticks, reads pairs and drops a trailing parenthesis', () => {
      assert.deepEqual(splitRow('| `a|b` | 1 / 2 (x) | y |'), ['`a|b`', '1 / 2 (x)', 'y']);
      assert.deepEqual(cellValues('4294967295 (2^32 − 1)'), [4294967295]);
      assert.deepEqual(cellValues('300 / 30 / 3000'), [300, 30, 3000]);
      assert.deepEqual(cellValues('[] (none: every `rts` is denied)'), [[]]);
      assert.deepEqual(cellValues('false'), [false]);
      assert.deepEqual(cellValues('8'), [8]);
      assert.notDeepEqual(cellValues('8'), [7], 'a value is compared, not searched for');
    });
  });

  it('§1.6: every limit of protocol/limits.ts has a row whose value cell equals it', () => {
    const rows = tableAfter(doc, '§1.6 Limits');
    const seen = new Set<string>();
    for (const [keyCell = '', valueCell = ''] of rows) {
      const keys = names(keyCell);
      assert.ok(keys.length > 0, `§1.6 row "${keyCell}" names a limit in backticks`);
      const values = keys[0] === 'DEVICE_ID_PATTERN' ? [valueCell.replace(/^`(.*)`$/, '$1')] : cellValues(valueCell);
      assert.equal(values.length, keys.length, `§1.6 ${keyCell}: one value per name, got "${valueCell}"`);
      keys.forEach((key, i) => {
        assert.ok(key in limits, `§1.6 names ${key}, which protocol/limits.ts (or DATA_MESSAGE_OVERHEAD of protocol/uplink.ts) does not export`);
        const actual = (limits as Record<string, unknown>)[key];
        const expected = actual instanceof RegExp ? actual.source : actual;
        assert.deepEqual(values[i], expected, `§1.6 ${key}: the doc says ${String(values[i])}, the code ${String(expected)}`);
        seen.add(key);
      });
    }
    assert.deepEqual(Object.keys(limits).filter((k) => !seen.has(k)), [], 'every limit has a §1.6 row');
  });

  it('§8.3: every rollout, uplink and serial setting has a row whose default cell equals parseConfig({})', () => {
    const rows = tableAfter(doc, '§8.3 Timeouts, limits and their defaults');
    const config = parseConfig({}) as unknown as Record<string, Record<string, unknown>>;
    const documented = new Map<string, unknown>();
    for (const [keyCell = '', valueCell = ''] of rows) {
      const keys = names(keyCell);
      const values = cellValues(valueCell);
      if (values.length !== keys.length) continue; // prose defaults ("true with `devicesFile`, else false") are not compared
      keys.forEach((k, i) => documented.set(k, values[i]));
    }
    for (const section of ['rollout', 'uplink', 'serial'] as const) {
      for (const [key, value] of Object.entries(config[section]!)) {
        const name = `${section}.${key}`;
        assert.ok(documented.has(name), `${name} has a row of its own in the §8.3 table, with one value per name`);
        assert.deepEqual(documented.get(name), value, `§8.3 ${name}: the doc says ${JSON.stringify(documented.get(name))}, the code ${JSON.stringify(value)}`);
      }
    }
    for (const key of ['host', 'port', 'maxPacketBytes', 'maxClients', 'connectRatePerMin']) {
      assert.deepEqual(documented.get(`broker.${key}`), config.broker![key], `§8.3 broker.${key}`);
    }
  });

  it('§8.3: the device defaults paragraph matches device-sim/options.ts DEVICE_DEFAULTS', () => {
    const para = /^Device \(the reference device's defaults[\s\S]*?\n\n/m.exec(doc)?.[0];
    assert.ok(para, '§8.3 has the device defaults paragraph');
    const text = para.replace(/\s+/g, ' ');
    const read = (re: RegExp, what: string): number => {
      const m = re.exec(text);
      assert.ok(m, `the device paragraph states ${what}`);
      return Number(m[1]);
    };
    assert.equal(read(/trial timeout (\d+) ms/, 'the trial timeout'), DEVICE_DEFAULTS.trialTimeoutMs);
    assert.equal(read(/reboot delay (\d+) ms/, 'the reboot delay'), DEVICE_DEFAULTS.bootDelayMs);
    assert.equal(read(/reconnect (\d+) ms doubling/, 'the first reconnect delay'), DEVICE_DEFAULTS.reconnectDelayMs);
    assert.equal(read(/doubling to (\d+) ms/, 'the reconnect bound'), DEVICE_DEFAULTS.reconnectMaxMs);
    assert.equal(read(/keepalive (\d+) s/, 'the keepalive'), DEVICE_DEFAULTS.keepaliveS);
    assert.equal(read(/CONNECT timeout (\d+) ms/, 'the CONNECT timeout'), DEVICE_DEFAULTS.connectTimeoutMs);
    assert.equal(read(/PUBACK wait before rebooting (\d+) ms/, 'the PUBACK wait'), DEVICE_DEFAULTS.publishTimeoutMs);
    assert.equal(read(/`maxChunk` (\d+)/, 'maxChunk'), DEVICE_DEFAULTS.maxChunk);
    assert.equal(read(/`window` (\d+)/, 'the window'), DEVICE_DEFAULTS.window);
    assert.equal(read(/up to (\d+) chunks written per flush/, 'the flush batch'), DEVICE_DEFAULTS.flushBatch);
    assert.equal(read(/slot capacity (\d+) MiB/, 'the slot capacity') * 1024 * 1024, DEVICE_DEFAULTS.slotCapacity);
  });

  it('§8.3: the laptop defaults paragraph matches laptop/settings.ts', () => {
    const para = /^Laptop \(fwpush\):[\s\S]*?\n\n/m.exec(doc)?.[0];
    assert.ok(para, '§8.3 has the laptop defaults paragraph');
    const text = para.replace(/\s+/g, ' ');
    const read = (re: RegExp, what: string): number => {
      const m = re.exec(text);
      assert.ok(m, `the laptop paragraph states ${what}`);
      return Number(m[1]);
    };
    assert.equal(read(/`replyTimeoutMs` (\d+)/, 'replyTimeoutMs'), laptopSettings.replyTimeoutMs);
    assert.equal(read(/`idleTimeoutMs` (\d+)/, 'idleTimeoutMs'), laptopSettings.idleTimeoutMs);
    assert.equal(read(/`--frame` (\d+)/, '--frame'), laptopSettings.maxFrame);
    assert.equal(read(/`uploadFrame` (\d+)/, 'uploadFrame'), laptopSettings.uploadFrame);
    assert.equal(read(/`fastFrameMs` (\d+)/, 'fastFrameMs'), laptopSettings.fastFrameMs);
    assert.equal(read(/`--window` (\d+)/, '--window'), laptopSettings.window);
    assert.equal(read(/`--baud` (\d+)/, '--baud'), laptopSettings.baudRate);
    assert.equal(read(/`data` messages of (\d+) bytes/, 'the small data message') + DATA_MESSAGE_OVERHEAD, laptopSettings.uploadFrame);
    assert.equal(read(/\(a (\d+)-byte frame\)/, 'the small frame'), laptopSettings.uploadFrame);
  });

  it('§4.10: the link library defaults column matches protocol/link/constants.ts', () => {
    const rows = tableAfter(doc, '§4.10 Defaults and bounds');
    const library = new Map(rows.map((r) => [r[0]!, r[1]!]));
    const cell = (name: string): unknown[] => {
      const c = library.get(name);
      assert.ok(c !== undefined, `§4.10 has a row "${name}"`);
      return cellValues(c.replace(/ ms$/, '').replace(/ until negotiated$/, '').replace(/ \(off\)/, ''));
    };
    assert.deepEqual(cell('window (frames in flight)'), [DEFAULT_WINDOW]);
    assert.deepEqual(cell('sending payload size'), [DEFAULT_SEND_PAYLOAD]);
    assert.deepEqual(cell('rtoInitial / rtoMin / rtoMax'), [DEFAULT_RTO_INITIAL_MS, DEFAULT_RTO_MIN_MS, DEFAULT_RTO_MAX_MS]);
    assert.deepEqual(cell('maxRetransmits (per frame, and per RESET)'), [DEFAULT_MAX_RETRANSMITS]);
    assert.deepEqual(cell('delayed ACK (§4.4): ackDelayMs / ackEvery'), [0, DEFAULT_ACK_EVERY]);
    assert.deepEqual(cell('accepted payload size (maxPayload, §3.5)'), [limits.MAX_FRAME_PAYLOAD]);
    assert.deepEqual(cell('maxMessage (reassembled)'), [limits.MAX_UPLINK_MESSAGE]);
  });

  it('§9: the code column is exactly the codes of protocol/errors.ts, each once', () => {
    const rows = tableAfter(doc, '§9 Error codes');
    const codes = rows.map((r) => {
      const n = names(r[0] ?? '');
      assert.equal(n.length, 1, `§9 row "${r[0]}" names one code`);
      assert.equal(r.length, 4, `§9 row ${r[0]}: code, meaning, raised by, wire`);
      assert.ok(['', 'wire'].includes(r[3]!), `§9 ${r[0]}: the wire column is empty or "wire"`);
      return n[0]!;
    });
    assert.equal(new Set(codes).size, codes.length, 'no code has two rows');
    assert.deepEqual([...codes].sort(), Object.keys(ErrorCodes).sort());
    for (const r of rows) assert.equal(r[1], (ErrorCodes as Record<string, string>)[names(r[0]!)[0]!] ?? r[1], `§9 ${r[0]}: meaning`);
  });
});
