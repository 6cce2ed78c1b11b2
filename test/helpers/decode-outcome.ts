import assert from 'node:assert/strict';
import { isFwError } from '../../protocol/errors.ts';

// For tests that hold a short decode path to the generic decoder: both must give the same value
// or the same error for every input.

/** Bytes as hex, maps as plain objects: comparable whatever the byte type (Buffer or Uint8Array). */
export function plain(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  if (Array.isArray(v)) return v.map(plain);
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

/** The outcome of a decode, comparable: the value (bytes as hex), or the error's code and message. */
export function outcome(decode: (p: Uint8Array) => unknown, p: Uint8Array): unknown {
  try {
    return { ok: plain(decode(p)) };
  } catch (err) {
    assert.ok(isFwError(err), String(err));
    return { code: err.code, message: err.message };
  }
}
