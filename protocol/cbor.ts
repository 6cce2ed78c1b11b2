import { Encoder } from 'cbor-x';
import { FwError } from './errors.ts';

/**
 * Plain RFC 8949 CBOR: maps with text keys, byte strings for data, no cbor-x records,
 * no typed-array tags, no tag-259 maps. Any CBOR decoder in any language reads it.
 */
const codec = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  mapsAsObjects: true,
  useTag259ForMaps: false,
  variableMapSize: true,
  pack: false,
  structuredClone: false,
  bundleStrings: false,
  int64AsType: 'number',
} as ConstructorParameters<typeof Encoder>[0]);

export function encodeCbor(value: unknown): Uint8Array {
  return codec.encode(value);
}

/**
 * Decode exactly one CBOR data item; trailing bytes, undefined or unsupported tags are errors.
 * Returned byte strings are Uint8Array views (Buffer in Node).
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  if (bytes.length === 0) throw new FwError('E_CBOR', 'empty CBOR payload');
  let items: unknown[];
  try {
    items = codec.decodeMultiple(bytes) as unknown[];
  } catch (cause) {
    throw new FwError('E_CBOR', `CBOR decode failed: ${(cause as Error).message}`, { cause });
  }
  if (!Array.isArray(items) || items.length !== 1) {
    throw new FwError('E_CBOR', `expected exactly one CBOR item, found ${Array.isArray(items) ? items.length : 0}`);
  }
  return items[0];
}
