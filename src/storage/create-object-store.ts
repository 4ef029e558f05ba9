import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../errors.js';
import { FsStore } from './fs-store.js';
import { validateKey } from './keys.js';
import type { ObjectStore } from './object-store.js';
import { S3Store, type S3StoreOptions } from './s3-store.js';

export type StorageConfig = { driver: 'fs'; root: string } | ({ driver: 's3' } & S3StoreOptions);

export interface CreateObjectStoreOptions {
  /** Base of relative `file://./…` URLs; defaults to process.cwd(). */
  cwd?: string;
}

const S3_PARAMS = new Set([
  'endpoint',
  'region',
  'forcePathStyle',
  'accessKeyId',
  'secretAccessKey',
  'sessionToken',
]);
// Lenient on purpose: Ceph and MinIO accept legacy names (upper case, `_`) that AWS no longer creates.
const BUCKET_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$/;

function configError(message: string, cause?: unknown): AppError {
  return new AppError('CONFIG_INVALID', `STORAGE_URL: ${message}`, { cause, retryable: false });
}

/** The URL without its query string, which may hold a secret key. */
function redact(storageUrl: string): string {
  const query = storageUrl.indexOf('?');
  return query === -1 ? storageUrl : `${storageUrl.slice(0, query)}?…`;
}

function parseFileUrl(storageUrl: string, cwd: string): StorageConfig {
  // `file://./x` is not a WHATWG file URL (`.` would be its host), but it is the convenient way to say "relative".
  const rest = storageUrl.startsWith('file://') ? storageUrl.slice('file://'.length) : '';
  if (rest.startsWith('./') || rest.startsWith('../') || rest === '.') {
    let relativePath: string;
    try {
      relativePath = decodeURIComponent(rest);
    } catch (err) {
      throw configError(`bad percent-encoding in ${storageUrl}`, err);
    }
    return { driver: 'fs', root: resolve(cwd, relativePath) };
  }
  try {
    return { driver: 'fs', root: fileURLToPath(storageUrl) };
  } catch (err) {
    throw configError(`${storageUrl} is neither file:///absolute/path nor file://./relative/path`, err);
  }
}

function parseBoolean(name: string, value: string): boolean {
  if (value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw configError(`${name} must be true or false, not ${JSON.stringify(value)}`);
}

function parseS3Url(storageUrl: string): StorageConfig {
  let url: URL;
  try {
    url = new URL(storageUrl);
  } catch (err) {
    throw configError(`${redact(storageUrl)} is not a URL`, err);
  }
  if (url.username !== '' || url.password !== '') {
    throw configError(
      'put S3 credentials in accessKeyId/secretAccessKey query parameters, not before the bucket',
    );
  }
  if (url.port !== '')
    throw configError('the S3 endpoint goes in the endpoint= parameter, not in the bucket part');
  const bucket = url.hostname;
  if (!BUCKET_NAME.test(bucket)) throw configError(`bucket name ${JSON.stringify(bucket)} is invalid`);

  const unknown = [...url.searchParams.keys()].filter((name) => !S3_PARAMS.has(name));
  if (unknown.length > 0) throw configError(`unknown parameter(s) ${unknown.join(', ')}`);
  const param = (name: string) => url.searchParams.get(name) ?? undefined;

  let prefix: string;
  try {
    prefix = decodeURIComponent(url.pathname).replace(/^\/+/, '').replace(/\/+$/, '');
  } catch (err) {
    throw configError(`bad percent-encoding in the prefix of ${redact(storageUrl)}`, err);
  }
  if (prefix !== '') {
    try {
      validateKey(prefix);
    } catch (err) {
      throw configError(`prefix ${JSON.stringify(prefix)} is not a valid key path`, err);
    }
  }

  const endpoint = param('endpoint');
  if (endpoint !== undefined) {
    let parsed: URL | undefined;
    try {
      parsed = new URL(endpoint);
    } catch {
      parsed = undefined;
    }
    if (parsed === undefined || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      throw configError(`endpoint ${JSON.stringify(endpoint)} must be an http(s) URL`);
    }
  }

  const accessKeyId = param('accessKeyId');
  const secretAccessKey = param('secretAccessKey');
  const sessionToken = param('sessionToken');
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw configError('accessKeyId and secretAccessKey go together');
  }
  const forcePathStyle = param('forcePathStyle');
  const region = param('region');

  return {
    driver: 's3',
    bucket,
    prefix,
    ...(region === undefined ? {} : { region }),
    ...(endpoint === undefined ? {} : { endpoint }),
    ...(forcePathStyle === undefined
      ? {}
      : { forcePathStyle: parseBoolean('forcePathStyle', forcePathStyle) }),
    ...(accessKeyId === undefined || secretAccessKey === undefined
      ? {}
      : {
          credentials: {
            accessKeyId,
            secretAccessKey,
            ...(sessionToken === undefined ? {} : { sessionToken }),
          },
        }),
  };
}

/**
 * Validates a storage URL without touching the network or the disk, so config loading can fail early:
 * - `file://./data/objects` (relative to `cwd`) or `file:///abs/path`
 * - `s3://bucket/optional/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true`, plus
 *   `accessKeyId`/`secretAccessKey` (and `sessionToken`) for MinIO and dev setups; without them the SDK's
 *   default chain (AWS_* env vars, profiles, instance roles) applies. Query values are percent-decoded, so a
 *   secret containing `+` must be written `%2B`. The region defaults to us-east-1.
 */
export function parseStorageUrl(storageUrl: string, opts: CreateObjectStoreOptions = {}): StorageConfig {
  if (storageUrl.startsWith('file:')) return parseFileUrl(storageUrl, opts.cwd ?? process.cwd());
  if (storageUrl.startsWith('s3://')) return parseS3Url(storageUrl);
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:/.exec(storageUrl)?.[0] ?? '(none)';
  throw configError(`unsupported scheme ${scheme}; use file:// or s3://`);
}

/** Chooses the driver by URL (see parseStorageUrl). Nothing is opened until the first call on the store. */
export function createObjectStore(storageUrl: string, opts: CreateObjectStoreOptions = {}): ObjectStore {
  const config = parseStorageUrl(storageUrl, opts);
  if (config.driver === 'fs') return new FsStore(config.root);
  const { driver: _driver, ...options } = config;
  return new S3Store(options);
}
