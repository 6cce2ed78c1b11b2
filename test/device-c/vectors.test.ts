import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { buildDeviceC } from '../../scripts/lib/device-c.ts';

/**
 * The C core's codec (device-c/core/fwd_msg.c, fwd_cbor.c) against every OTA vector of
 * docs/protocol.md §10.6 and the signed bytes of §10.8, parsed from the document itself: each
 * `ota-down` vector's hex decodes, in C, to its value; each `ota-up` vector's value encodes, in C,
 * to its hex. Then the strict reader (§1.4.11): trailing bytes, tags, indefinite lengths,
 * non-shortest heads, the 8-byte argument and truncation are refused; keys in another order and
 * unknown keys are not.
 */
interface Vector { name: string; kind: string; value: Record<string, unknown>; hex: string }

function parseVectors(markdown: string): Vector[] {
  const blanked = markdown.replace(/^````[^\n]*\n[\s\S]*?^````$/gm, (m) => m.replace(/[^\n]/g, ''));
  const lines = blanked.split('\n');
  const out: Vector[] = [];
  for (let i = 0; i < lines.length; i++) {
    const head = /^```vector name=([a-z0-9-]+) kind=([a-z0-9-]+)$/.exec(lines[i]!);
    if (!head) continue;
    const value = /^value: (.+)$/.exec(lines[i + 1] ?? '')?.[1];
    const hex = /^hex: ([0-9a-f]+)$/.exec(lines[i + 2] ?? '')?.[1];
    assert.ok(value !== undefined && hex !== undefined, `docs/protocol.md:${i + 1}: malformed vector`);
    out.push({ name: head[1]!, kind: head[2]!, value: JSON.parse(value) as Record<string, unknown>, hex });
  }
  return out;
}

/** Flatten a message to the harness's `key=value` fields (nested maps dotted, arrays comma-joined, bytes as hex). */
function flatten(v: Record<string, unknown>, prefix = ''): string[] {
  const out: string[] = [];
  for (const [k, x] of Object.entries(v)) {
    const key = prefix + k;
    if (Array.isArray(x)) out.push(`${key}=${x.join(',')}`);
    else if (x !== null && typeof x === 'object' && '$bytes' in x) out.push(`${key}=${String((x as { $bytes: string }).$bytes)}`);
    else if (x !== null && typeof x === 'object') out.push(...flatten(x as Record<string, unknown>, `${key}.`));
    else out.push(`${key}=${String(x)}`);
  }
  return out;
}

/** The harness as a coprocess: one request line, one answer line. */
async function harness(bin: string): Promise<{ ask(line: string): Promise<string>; close(): void }> {
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: ((l: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => waiting.shift()?.(l));
  return {
    ask: (line) => new Promise((resolve) => {
      waiting.push(resolve);
      child.stdin.write(`${line}\n`);
    }),
    close: () => child.stdin.end(),
  };
}

const doc = readFileSync(fileURLToPath(new URL('../../docs/protocol.md', import.meta.url)), 'utf8');
const vectors = parseVectors(doc);
/**
 * Keys of §6.15 (releases of several components) that the C core does not implement (docs/device-guide.md):
 * it decodes those messages ignoring them, as it ignores any unknown key (§1.4.9), and has no
 * components to report in `status` or `boot`.
 */
const RELEASE_KEYS = ['component', 'release', 'with'];
const withoutReleaseKeys = (v: Record<string, unknown>): Record<string, unknown> => Object.fromEntries(Object.entries(v).filter(([k]) => !RELEASE_KEYS.includes(k)));
const down = vectors.filter((v) => v.kind === 'ota-down');
const up = vectors.filter((v) => v.kind === 'ota-up' && !('components' in v.value));
const signedBytes = vectors.filter((v) => v.kind === 'signed-bytes');

describe('device-c: the C core against the vectors of docs/protocol.md §10.6', function () {
  this.timeout(120_000);
  let h: Awaited<ReturnType<typeof harness>>;
  before(async () => { h = await harness((await buildDeviceC()).vectors); });
  after(() => h?.close());

  it('the §6.15 vectors it leaves aside are exactly the release ones (component, release, with, components)', () => {
    const aside = vectors.filter((v) => (v.kind === 'ota-up' && 'components' in v.value) || (v.kind === 'ota-down' && RELEASE_KEYS.some((k) => k in v.value)));
    assert.deepEqual(aside.map((v) => v.name).sort(), ['down-activate-with', 'down-confirm-with', 'down-offer-component', 'up-boot-components', 'up-status-components']);
  });

  it('finds every OTA vector of the document (one per message type and direction at least)', () => {
    assert.ok(down.length >= 10 && up.length >= 15, `${down.length} down, ${up.length} up`);
    assert.deepEqual([...new Set(down.map((v) => v.value.t))].sort(), ['abort', 'activate', 'chunk', 'confirm', 'offer', 'ping', 'probe', 'query', 'tasks', 'verify']);
    assert.deepEqual([...new Set(up.map((v) => v.value.t))].sort(),
      ['aborted', 'accept', 'ack', 'activated', 'boot', 'confirmed', 'pong', 'probed', 'reject', 'status', 'verified']);
  });

  it('decodes every ota-down vector to its value', async () => {
    for (const v of down) {
      const want = v.value.t === 'tasks' ? { t: 'tasks', tasks: (v.value.tasks as unknown[]).length } : withoutReleaseKeys(v.value);
      const got = await h.ask(`down\t${v.hex}`);
      assert.ok(got.startsWith('{'), `${v.name}: ${got}`);
      assert.deepEqual(JSON.parse(got), want, v.name);
    }
  });

  it('encodes every ota-up vector to its hex, byte for byte', async () => {
    for (const v of up) assert.equal(await h.ask(['up', ...flatten(v.value)].join('\t')), v.hex, v.name);
  });

  it('rebuilds the signed bytes of §10.8 from an offer\'s fields', async () => {
    assert.ok(signedBytes.length >= 1);
    for (const v of signedBytes) assert.equal(await h.ask(['signed', ...flatten(v.value)].join('\t')), v.hex, v.name);
  });

  it('refuses what §1.4 forbids: trailing bytes, tags, indefinite lengths, non-shortest heads, 8-byte arguments, truncation', async () => {
    const refused = async (hex: string, what: string): Promise<void> => {
      const got = await h.ask(`down\t${hex}`);
      assert.match(got, /^error /, `${what}: accepted ${hex} as ${got}`);
    };
    for (const v of down) {
      await refused(`${v.hex}00`, `${v.name} + a trailing byte`);
      await refused(`c0${v.hex}`, `${v.name} tagged`);
      await refused(v.hex.slice(0, -2), `${v.name} truncated`);
      const pairs = parseInt(v.hex.slice(0, 2), 16) & 0x1f;
      await refused(`bf${v.hex.slice(2)}ff`, `${v.name} as an indefinite-length map`);
      await refused(`b8${pairs.toString(16).padStart(2, '0')}${v.hex.slice(2)}`, `${v.name} with a non-shortest map head`);
    }
    // down-verify's sid with the 8-byte argument, and with a 4-byte head for a 1-byte value
    await refused('a2617466766572696679637369641b0000000012345678', 'sid with the 8-byte argument');
    await refused('a2617466766572696679637369641a00000005', 'sid 5 with a 4-byte head');
    // down-query's type as an indefinite-length text
    await refused('a161747f6571756572797fff', 'indefinite-length text');
    // a tagged field value, null for a field, a negative integer
    await refused('a2617466766572696679637369640c1a12345678', 'sid tagged (0c = uint 12, not a tag: still a wrong shape)');
    await refused('a261746676657269667963736964c11a12345678', 'sid with tag 1');
    await refused('a261746676657269667963736964f6', 'sid null');
    await refused('a26174667665726966796373696420', 'sid -1');
  });

  it('accepts keys in any order and ignores unknown keys (§1.4.3, §1.4.9)', async () => {
    // down-verify with its pairs swapped, then with an extra key "zz": 1
    assert.deepEqual(JSON.parse(await h.ask('down\ta2637369641a123456786174667665726966 79'.replace(' ', ''))), { t: 'verify', sid: 305419896 });
    assert.deepEqual(JSON.parse(await h.ask('down\ta3617466766572696679637369641a12345678627a7a01')), { t: 'verify', sid: 305419896 });
    // an unknown type is told apart from an invalid message (§1.5 step 4)
    assert.match(await h.ask('down\ta16174657a7a7a7a7a'), /^error 4 /);
  });
});
