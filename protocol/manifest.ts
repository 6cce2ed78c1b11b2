import { createHash } from 'node:crypto';
import { z } from 'zod';
import { crc32 } from './crc.ts';
import { FwError } from './errors.ts';
import {
  MAX_CHUNK_SIZE, MAX_HW_MODELS, MAX_IMAGE_SIZE, MAX_NAME_LENGTH, MIN_CHUNK_SIZE,
} from './limits.ts';
import { parseWith, sha256Hex, u32 } from './schema.ts';
import { isValidVersion } from './version.ts';

/**
 * The manifest describes one image (docs/protocol.md §5). The same shape is used in a JSON
 * manifest file, in the uplink request-to-send and (as fields of `offer`) towards devices.
 */
export interface Manifest {
  /** Image name, e.g. "sensor-fw". */
  name: string;
  /** Semantic version of the image. */
  version: string;
  /** Hardware models the image runs on. */
  hw: string[];
  /** Image size in bytes. */
  size: number;
  /** CRC-32 (IEEE) of the whole image. */
  crc32: number;
  /** SHA-256 of the whole image, lowercase hex. */
  sha256: string;
  /** Preferred chunk size for distribution to devices, bytes. */
  chunk: number;
  /** Anti-rollback sequence number (§5.4.4): a device refuses an image with a lower one. Absent = 0. */
  seq?: number | undefined;
  /** Ed25519 signature over the fields above (§5.4); absent = unsigned. */
  signature?: ManifestSignature | undefined;
}

/** `manifest.signature` (§5.4.2): key id (16 hex) and Ed25519 signature (128 hex). */
export interface ManifestSignature { keyId: string; sig: string }

export const keyIdHex = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits');
export const signatureHex = z.string().regex(/^[0-9a-f]{128}$/, 'must be 128 lowercase hex digits (64 bytes)');

const name = z.string().min(1).max(MAX_NAME_LENGTH).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-"');
const hwModel = z.string().min(1).max(MAX_NAME_LENGTH).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, ".", "_" or "-"');

export const manifestSchema = z.strictObject({
  name,
  version: z.string().max(MAX_NAME_LENGTH).refine(isValidVersion, 'must be a semantic version such as 1.2.3'),
  hw: z.array(hwModel).min(1).max(MAX_HW_MODELS),
  size: u32.min(1).max(MAX_IMAGE_SIZE),
  crc32: u32,
  sha256: sha256Hex,
  chunk: z.number().int().min(MIN_CHUNK_SIZE).max(MAX_CHUNK_SIZE),
  seq: u32.optional(),
  signature: z.strictObject({ keyId: keyIdHex, sig: signatureHex }).optional(),
});

/** Validate an untrusted manifest (from a file, the wire or a store record). */
export function parseManifest(value: unknown): Manifest {
  return parseWith(manifestSchema, value, 'E_MANIFEST_INVALID', 'manifest');
}

export const DEFAULT_CHUNK_SIZE = 4096;

export interface ImageDigest { size: number; crc32: number; sha256: string }

/** Size, CRC-32 and SHA-256 of an image held in memory. */
export function digestImage(image: Uint8Array): ImageDigest {
  return {
    size: image.length,
    crc32: crc32(image),
    sha256: createHash('sha256').update(image).digest('hex'),
  };
}

/** Build a manifest for an image from its bytes. */
export function manifestForImage(image: Uint8Array, meta: { name: string; version: string; hw: string[]; chunk?: number; seq?: number }): Manifest {
  return parseManifest({
    name: meta.name, version: meta.version, hw: meta.hw, chunk: meta.chunk ?? DEFAULT_CHUNK_SIZE, ...digestImage(image),
    ...(meta.seq !== undefined ? { seq: meta.seq } : {}),
  });
}

/**
 * Check an image against its manifest: size, then CRC-32, then SHA-256 — all three, always.
 * Throws E_IMAGE_SIZE / E_IMAGE_CRC / E_IMAGE_SHA256 naming expected and actual values.
 */
export function checkDigest(manifest: Manifest, actual: ImageDigest): void {
  if (actual.size !== manifest.size) {
    throw new FwError('E_IMAGE_SIZE', `image is ${actual.size} bytes, manifest says ${manifest.size}`, { details: { expected: manifest.size, actual: actual.size } });
  }
  if (actual.crc32 !== manifest.crc32) {
    throw new FwError('E_IMAGE_CRC', `image CRC-32 is ${hex32(actual.crc32)}, manifest says ${hex32(manifest.crc32)}`, { details: { expected: manifest.crc32, actual: actual.crc32 } });
  }
  if (actual.sha256 !== manifest.sha256) {
    throw new FwError('E_IMAGE_SHA256', `image SHA-256 is ${actual.sha256}, manifest says ${manifest.sha256}`, { details: { expected: manifest.sha256, actual: actual.sha256 } });
  }
}

export function hex32(n: number): string {
  return `0x${(n >>> 0).toString(16).padStart(8, '0')}`;
}
