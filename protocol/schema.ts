import { z } from 'zod';
import { decodeCbor } from './cbor.ts';
import { FwError, type ErrorCode } from './errors.ts';
import { MAX_TEXT_LENGTH } from './limits.ts';

/** Shared field types for message schemas. Bytes are Uint8Array (a CBOR byte string). */
export const u32 = z.number().int().min(0).max(0xffff_ffff);
export const u16 = z.number().int().min(0).max(0xffff);
export const text = z.string().max(MAX_TEXT_LENGTH);
export const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'must be a byte string');
export const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');

/** Turn a zod failure into a typed error naming each field and its problem. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, code: ErrorCode, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new FwError(code, `${what}: ${formatIssues(r.error)}`, { details: { issues: r.error.issues.length } });
}

export function formatIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/**
 * Decode one CBOR message map and validate it against a discriminated union on "t".
 * Unknown types give E_MESSAGE_TYPE (counted and dropped by receivers); anything else that
 * does not fit gives E_MESSAGE_INVALID naming the field.
 */
export function decodeMessage<T>(schema: z.ZodType<T>, payload: Uint8Array, maxBytes: number, what: string): T {
  if (payload.length > maxBytes) {
    throw new FwError('E_MESSAGE_INVALID', `${what}: ${payload.length} bytes exceeds ${maxBytes}`);
  }
  const value = decodeCbor(payload);
  const t = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as { t?: unknown }).t : undefined;
  if (typeof t !== 'string') throw new FwError('E_MESSAGE_INVALID', `${what}: not a CBOR map with a text "t" field`);
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const name = t.slice(0, 32);
  if (r.error.issues.some((i) => i.code === 'invalid_union' && i.path.length === 1 && i.path[0] === 't')) {
    throw new FwError('E_MESSAGE_TYPE', `${what}: unknown message type "${name}"`);
  }
  throw new FwError('E_MESSAGE_INVALID', `${what} "${name}": ${formatIssues(r.error)}`);
}
