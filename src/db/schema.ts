import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';

/** Kysely table types; mirror src/db/migrations. */
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T = Record<string, unknown>> = ColumnType<T, T | string | undefined, T | string>;

export type Role = 'clinic' | 'reader' | 'ops' | 'admin';
export type Priority = 'stat' | 'urgent' | 'routine';
export type CaseKind = 'imaging' | 'ecg' | 'pathology';
export type CaseStatus = 'receiving' | 'processing' | 'ready' | 'routed' | 'failed';
export type FileStatus = 'received' | 'processing' | 'processed' | 'failed';

export interface SitesTable {
  id: string;
  name: string;
  jurisdiction: string;
  ae_titles: ColumnType<string[], string[] | undefined, string[]>;
  created_at: Generated<Date>;
}

export interface ReadersTable {
  id: string;
  name: string;
  specialties: ColumnType<string[], string[] | undefined, string[]>;
  jurisdictions: ColumnType<string[], string[] | undefined, string[]>;
  max_active: Generated<number>;
  active: Generated<boolean>;
  created_at: Generated<Date>;
}

export interface ApiKeysTable {
  id: Generated<string>;
  key_hash: string;
  key_prefix: string;
  role: Role;
  site_id: string | null;
  reader_id: string | null;
  label: string | null;
  created_at: Generated<Date>;
  revoked_at: NullableTimestamp;
}

export interface UploadsTable {
  id: string;
  site_id: string;
  priority: Priority;
  notes: string | null;
  request_id: string | null;
  created_at: Generated<Date>;
}

export interface CasesTable {
  id: Generated<string>;
  site_id: string;
  kind: CaseKind;
  status: ColumnType<CaseStatus, CaseStatus | undefined, CaseStatus>;
  priority: Priority;
  priority_reason: string | null;
  study_instance_uid: string | null;
  upload_id: string | null;
  notes: string | null;
  metadata: Json;
  route_note: string | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  processed_at: NullableTimestamp;
  routed_at: NullableTimestamp;
}

export interface FilesTable {
  id: string;
  upload_id: string;
  site_id: string;
  case_id: string | null;
  name: string;
  object_key: string;
  sha256: string;
  bytes: ColumnType<string, number | string, number | string>;
  content_type: string | null;
  kind: CaseKind | null;
  format: string | null;
  status: ColumnType<FileStatus, FileStatus | undefined, FileStatus>;
  error_code: string | null;
  error_message: string | null;
  metadata: Json;
  patient: Json<Record<string, unknown> | null>;
  sop_instance_uid: ColumnType<string | null, string | null | undefined, string | null>;
  duplicate_of: ColumnType<string | null, string | null | undefined, string | null>;
  attempts: Generated<number>;
  received_at: Generated<Date>;
  ingested_at: NullableTimestamp;
  processed_at: NullableTimestamp;
  failed_at: NullableTimestamp;
}

export interface ArtifactsTable {
  id: Generated<string>;
  case_id: string;
  file_id: string | null;
  name: string;
  object_key: string;
  content_type: string;
  bytes: ColumnType<string, number | string, number | string>;
  width: number | null;
  height: number | null;
  created_at: Generated<Date>;
}

export interface AssignmentsTable {
  id: Generated<string>;
  case_id: string;
  reader_id: string;
  reason: string;
  assigned_at: Generated<Date>;
  released_at: NullableTimestamp;
}

export interface AuditEventsTable {
  id: Generated<string>;
  at: Generated<Date>;
  actor_key_id: string | null;
  actor_role: string | null;
  action: string;
  case_id: string | null;
  file_id: string | null;
  request_id: string | null;
  detail: Json;
}

export interface UidRemapsTable {
  case_id: string;
  original_uid: string;
  replacement_uid: string;
  created_at: Generated<Date>;
}

export interface Database {
  sites: SitesTable;
  readers: ReadersTable;
  api_keys: ApiKeysTable;
  uploads: UploadsTable;
  cases: CasesTable;
  files: FilesTable;
  artifacts: ArtifactsTable;
  assignments: AssignmentsTable;
  audit_events: AuditEventsTable;
  uid_remaps: UidRemapsTable;
}

export type CaseRow = Selectable<CasesTable>;
export type FileRow = Selectable<FilesTable>;
export type ReaderRow = Selectable<ReadersTable>;
export type NewFile = Insertable<FilesTable>;
