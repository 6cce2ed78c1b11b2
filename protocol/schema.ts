import { z } from 'zod';
import { FwError, type ErrorCode } from './errors.ts';
import { MAX_TEXT_LENGTH } from './limits.ts';

/** Shared field types for message schemas. Bytes are Uint8Array (a CBOR byte string). */
export const u32 = z.number().int().min(0).max(0xffff_ffff);
export const u16 = z.number().int().min(0).max(0xffff);
export const text = z.string().max(MAX_TEXT_LENGTH);
export const bytes = z.instanceof(Uint8Array);
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
