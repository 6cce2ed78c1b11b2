import assert from 'node:assert/strict';
import { encodeCbor } from '../../protocol/cbor.ts';
import { isFwError } from '../../protocol/errors.ts';
import { plain } from './decode-outcome.ts';

// Per-field edge tables for the message codecs (docs/protocol.md §1.5 step 5, §1.6): a valid
// message, then one field changed at a time to a value at or just past its bound. An accepted value
// decodes to the message as sent; a refused one fails with E_MESSAGE_INVALID naming that field.

/** Marks a field removed from the message. */
export const ABSENT = Symbol('absent');

/** One field changed: its path ("slots.a.version", "components.0.slot"), the value, and whether a receiver accepts it. */
export interface Edge {
  path: string;
  value: unknown;
  ok: boolean;
  /** The field the error names, when not `path` (an array element, a field a refinement names); `x.*`: x or a field inside it. */
  names?: string;
  /** Text the error must carry besides the field (what is wrong). */
  says?: RegExp;
}

export const ok = (path: string, value: unknown): Edge => ({ path, value, ok: true });
export const bad = (path: string, value: unknown, extra: { names?: string; says?: RegExp } = {}): Edge => ({ path, value, ok: false, ...extra });

/** A deep copy of `base` with the value at `path` replaced, or removed when `value` is ABSENT. */
export function withField(base: Record<string, unknown>, path: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(base);
  const keys = path.split('.');
  let at: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
  const last = keys[keys.length - 1]!;
  if (value === ABSENT) delete at[last];
  else at[last] = value;
  return copy;
}

/** The same map with "t" moved last: not the reference encoding (§1.4.3), so never a decoder's short path. */
export function tLast(m: Record<string, unknown>): Record<string, unknown> {
  const { t, ...rest } = m;
  return { ...rest, t };
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const show = (v: unknown): string => (v === ABSENT ? '(absent)' : JSON.stringify(plain(v))?.slice(0, 60) ?? String(v));

/** `value` decodes (in table key order and with "t" last) to itself. */
export function accepts(decode: (p: Uint8Array) => unknown, value: Record<string, unknown>, label = ''): void {
  for (const m of [value, tLast(value)]) {
    let got: unknown;
    try {
      got = decode(encodeCbor(m));
    } catch (err) {
      assert.fail(`${label}: refused: ${String(err)}`);
    }
    assert.deepStrictEqual(plain(got), plain(value), label);
  }
}

/** `value` is refused (in table key order and with "t" last) with E_MESSAGE_INVALID naming `field`, the first issue when `first`. */
export function refuses(decode: (p: Uint8Array) => unknown, value: Record<string, unknown>, field: string, says?: RegExp, label = ''): void {
  const at = field.endsWith('.*') ? `${escape(field.slice(0, -2))}(?:\\.[^:;]*)?` : escape(field);
  const named = new RegExp(`"${escape(String(value.t))}": (?:[^;]*; )*${at}: `);
  for (const m of [value, tLast(value)]) {
    assert.throws(() => decode(encodeCbor(m)), (err: unknown) => {
      assert.ok(isFwError(err, 'E_MESSAGE_INVALID'), `${label}: expected E_MESSAGE_INVALID, got ${String(err)}`);
      assert.match(err.message, named, label);
      if (says) assert.match(err.message, says, label);
      return true;
    }, label);
  }
}

/** Check each edge against `base`, which must itself be accepted. */
export function checkEdges(decode: (p: Uint8Array) => unknown, base: Record<string, unknown>, edges: readonly Edge[]): void {
  accepts(decode, base, `${String(base.t)} (base)`);
  for (const e of edges) {
    const m = withField(base, e.path, e.value);
    const label = `${String(base.t)}.${e.path} = ${show(e.value)}`;
    if (e.ok) accepts(decode, m, label);
    else refuses(decode, m, e.names ?? e.path, e.says, label);
  }
}

/** The usual edges of a u32 field (§1.4.5): 0 and 2^32 - 1 accepted; 2^32, -1 and 1.5 refused; absent refused unless optional. */
export function u32Edges(path: string, optional = false): Edge[] {
  return [ok(path, 0), ok(path, 0xffff_ffff), bad(path, 2 ** 32), bad(path, -1), bad(path, 1.5), optional ? ok(path, ABSENT) : bad(path, ABSENT)];
}

/** Text of exactly `n` UTF-16 code units. */
export const chars = (n: number, c = 'x'): string => c.repeat(n);
