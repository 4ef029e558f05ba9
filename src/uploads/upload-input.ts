import type { Priority } from '../db/schema.js';
import { AppError } from '../errors.js';

/** What a clinic may say about a file or batch, whatever the door (tus metadata, JSON body, form fields). */
export const PRIORITIES: readonly Priority[] = ['stat', 'urgent', 'routine'];
export const SHA256_HEX = /^[0-9a-f]{64}$/;
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Same bound as the `notes` form field of `POST /v1/uploads`. */
export const MAX_NOTES = 4000;

export function parsePriority(value: string | null | undefined): Priority {
  if (value === undefined || value === null || value === '') return 'routine';
  if (!(PRIORITIES as readonly string[]).includes(value)) {
    throw new AppError('VALIDATION_FAILED', 'priority must be stat, urgent or routine');
  }
  return value as Priority;
}

export function parseNotes(value: string | null | undefined): string | null {
  return value ? value.slice(0, MAX_NOTES) : null;
}

export function parseSha256(value: string | null | undefined, what = 'sha256'): string | null {
  if (value === undefined || value === null || value === '') return null;
  const lower = value.toLowerCase();
  if (!SHA256_HEX.test(lower)) throw new AppError('VALIDATION_FAILED', `${what} must be 64 hex digits`);
  return lower;
}

export function parseBatchId(value: string | null | undefined): string | null {
  if (value === undefined || value === null || value === '') return null;
  if (!UUID.test(value)) throw new AppError('VALIDATION_FAILED', 'batch must be an upload batch id (a UUID)');
  return value.toLowerCase();
}

/** The key a file of an upload gets, as `receive-files` names it: under the site, the upload and the file id. */
export function objectKeyFor(siteId: string, uploadId: string, fileId: string): string {
  return `sites/${siteId}/uploads/${uploadId}/${fileId}`;
}
