import type { ColumnType, Generated, Insertable, Selectable } from 'kysely';
import type { ReportCode } from '../domain/report.js';
import type { CrossBorderPolicy, PoolTarget, RoutingPolicy, RuleMatch } from '../domain/rules.js';
import type { ShiftException, WeeklyShift } from '../domain/shifts.js';

/** Kysely table types; mirror src/db/migrations. */
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
type Json<T = Record<string, unknown>> = ColumnType<T, T | string | undefined, T | string>;

export type Role = 'clinic' | 'reader' | 'ops' | 'admin';
export type Priority = 'stat' | 'urgent' | 'routine';
export type CaseKind = 'imaging' | 'ecg' | 'pathology';
export type CaseStatus = 'receiving' | 'processing' | 'ready' | 'routed' | 'reported' | 'failed';
export type FileStatus = 'received' | 'processing' | 'processed' | 'failed';

export interface SitesTable {
  id: string;
  name: string;
  jurisdiction: string;
  ae_titles: ColumnType<string[], string[] | undefined, string[]>;
  /** Mains frequency for the ECG notch; null = from the file or detected. */
  mains_hz: ColumnType<50 | 60 | null, 50 | 60 | null | undefined, 50 | 60 | null>;
  /** Where signed reports are announced (migration 0005); set together with its HMAC secret, or neither. */
  webhook_url: ColumnType<string | null, string | null | undefined, string | null>;
  webhook_secret: ColumnType<string | null, string | null | undefined, string | null>;
  cross_border_policy: ColumnType<CrossBorderPolicy, CrossBorderPolicy | undefined, CrossBorderPolicy>;
  /** The full contract, defaults included: { stat, urgent, routine } minutes. */
  sla_minutes: Json<Record<Priority, number>>;
  created_at: Generated<Date>;
}

export interface ReadersTable {
  id: string;
  name: string;
  specialties: ColumnType<string[], string[] | undefined, string[]>;
  jurisdictions: ColumnType<string[], string[] | undefined, string[]>;
  subspecialties: ColumnType<string[], string[] | undefined, string[]>;
  languages: ColumnType<string[], string[] | undefined, string[]>;
  time_zone: ColumnType<string, string | undefined, string>;
  /** null: no schedule kept (available at any hour). */
  shifts: Json<WeeklyShift[] | null>;
  shift_exceptions: Json<ShiftException[]>;
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
  /** A key past this time authenticates no more (migration 0006); null: no expiry. */
  expires_at: NullableTimestamp;
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
  flags: ColumnType<string[], string[] | undefined, string[]>;
  /** Set by the `cases_due_at` trigger from the site's contract and the priority. */
  due_at: ColumnType<Date, Date | string | undefined, Date | string>;
  priority_rank: ColumnType<number, never, never>;
  pool_id: ColumnType<string | null, string | null | undefined, string | null>;
  pool_specialty: ColumnType<string | null, string | null | undefined, string | null>;
  pool_subspecialty: ColumnType<string | null, string | null | undefined, string | null>;
  pool_language: ColumnType<string | null, string | null | undefined, string | null>;
  pool_jurisdiction: ColumnType<string | null, string | null | undefined, string | null>;
  pool_fallbacks: Json<PoolTarget[]>;
  route_rule: ColumnType<string | null, string | null | undefined, string | null>;
  /** The live assignment's reader, kept by the `assignments_to_case` trigger; never written directly. */
  assigned_reader_id: ColumnType<string | null, never, never>;
  lease_reader_id: ColumnType<string | null, string | null | undefined, string | null>;
  lease_expires_at: NullableTimestamp;
  claimed_at: NullableTimestamp;
  /** SLA escalation reached (migration 0006): 0 none, 1 at 50 % of the SLA, 2 at 80 %. */
  escalation_level: ColumnType<number, number | undefined, number>;
  escalated_at: NullableTimestamp;
  /** The due time the escalation jobs were queued for; differs from due_at when they need (re)scheduling. */
  sla_scheduled_for: NullableTimestamp;
  /** Worklist rank: priority rank lowered by the escalation level (generated). */
  queue_rank: ColumnType<number, never, never>;
  /** When the report was signed (migration 0005): set with status 'reported', the stamp SLA clocks stop on. */
  reported_at: NullableTimestamp;
  /** Opened to readers licensed elsewhere, who get the de-identified view only (migration 0008). */
  deidentified_abroad: ColumnType<boolean, boolean | undefined, boolean>;
  /** Days every date of the case's de-identified DICOM copies moves by, drawn with the first copy (migration
   * 0012). */
  deid_date_shift_days: ColumnType<number | null, number | null | undefined, number | null>;
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
  /** The BullMQ job id that carries this file's ingest (see migration 0011). */
  ingest_job: ColumnType<string | null, string | null | undefined, string | null>;
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
  /** Shows who the patient is (a slide's label or macro): never served to de-identified views (migration 0008). */
  identifying: ColumnType<boolean, boolean | undefined, boolean>;
}

export interface AssignmentsTable {
  id: Generated<string>;
  case_id: string;
  reader_id: string;
  reason: string;
  assigned_at: Generated<Date>;
  released_at: NullableTimestamp;
  /** Set with released_at when the assignment ended in a signed report, not given back (migration 0005). */
  completed_at: NullableTimestamp;
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
  /** The client address of the request (migration 0006); null for system events. */
  ip: ColumnType<string | null, string | null | undefined, never>;
}

export interface RoutingRulesTable {
  id: Generated<string>;
  position: number;
  name: string;
  enabled: ColumnType<boolean, boolean | undefined, boolean>;
  match: Json<RuleMatch>;
  target: Json<PoolTarget>;
  policy: RoutingPolicy;
  fallbacks: Json<PoolTarget[]>;
  prefer_prior_reader: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface UidRemapsTable {
  case_id: string;
  original_uid: string;
  replacement_uid: string;
  created_at: Generated<Date>;
}

export interface UploadBatchesTable {
  id: string;
  site_id: string;
  priority: Priority;
  notes: string | null;
  request_id: string | null;
  actor_key_id: string | null;
  created_at: Generated<Date>;
  last_activity_at: Generated<Date>;
  sealed_at: NullableTimestamp;
  expired_at: NullableTimestamp;
}

export type UploadProtocol = 'tus' | 'multipart';
export type UploadEndReason = 'expired' | 'terminated' | 'checksum-mismatch' | 'verification-failed';

export interface UploadSessionsTable {
  id: string;
  protocol: UploadProtocol;
  site_id: string;
  upload_id: string;
  batch_id: string | null;
  file_id: string;
  object_key: string;
  name: string;
  content_type: string | null;
  bytes: ColumnType<string, number | string, number | string>;
  priority: Priority;
  notes: string | null;
  metadata: Json<Record<string, string | null>>;
  declared_sha256: string | null;
  sha256: string | null;
  s3_upload_id: string | null;
  part_bytes: ColumnType<string | null, number | string | null | undefined, number | string | null>;
  actor_key_id: string | null;
  request_id: string | null;
  created_at: Generated<Date>;
  last_activity_at: Generated<Date>;
  completed_at: NullableTimestamp;
  ended_at: NullableTimestamp;
  end_reason: UploadEndReason | null;
}

/** One report per case (migration 0005); immutable once signed (a trigger refuses the change). */
export interface ReportsTable {
  id: Generated<string>;
  case_id: string;
  author_reader_id: string;
  findings: string;
  impression: string;
  critical: boolean;
  codes: Json<ReportCode[]>;
  deidentified: ColumnType<boolean, boolean | undefined, boolean>;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
  signed_at: NullableTimestamp;
  signer_reader_id: ColumnType<string | null, string | null | undefined, string | null>;
  signer_name: ColumnType<string | null, string | null | undefined, string | null>;
  /** sha256 (hex) of signed_content, checked by the database. */
  content_hash: ColumnType<string | null, string | null | undefined, string | null>;
  /** The canonical JSON that was signed. */
  signed_content: ColumnType<string | null, string | null | undefined, string | null>;
}

/** Appended to a signed report, signed on creation, never changed (a trigger refuses UPDATE and DELETE). */
export interface ReportAddendaTable {
  id: Generated<string>;
  report_id: string;
  case_id: string;
  seq: number;
  text: string;
  critical: boolean;
  signed_at: Date;
  signer_reader_id: string;
  signer_name: string;
  previous_hash: string;
  content_hash: string;
  signed_content: string;
}

export type WebhookDeliveryStatus = 'pending' | 'delivered' | 'failed';

export interface WebhookDeliveriesTable {
  id: string;
  site_id: string;
  case_id: string;
  report_id: string;
  event: string;
  body: string;
  url: string;
  status: ColumnType<WebhookDeliveryStatus, WebhookDeliveryStatus | undefined, WebhookDeliveryStatus>;
  attempts: Generated<number>;
  round: Generated<number>;
  round_attempts: Generated<number>;
  last_status_code: ColumnType<number | null, number | null | undefined, number | null>;
  last_error: ColumnType<string | null, string | null | undefined, string | null>;
  last_duration_ms: ColumnType<number | null, number | null | undefined, number | null>;
  last_attempt_at: NullableTimestamp;
  next_retry_at: NullableTimestamp;
  request_id: string | null;
  created_at: Generated<Date>;
  delivered_at: NullableTimestamp;
  failed_at: NullableTimestamp;
}

export interface WebhookAttemptsTable {
  id: Generated<string>;
  delivery_id: string;
  attempt: number;
  round: number;
  url: string;
  started_at: Date;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  outcome: 'delivered' | 'retry' | 'failed';
  next_retry_at: Date | null;
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
  routing_rules: RoutingRulesTable;
  upload_batches: UploadBatchesTable;
  upload_sessions: UploadSessionsTable;
  reports: ReportsTable;
  report_addenda: ReportAddendaTable;
  webhook_deliveries: WebhookDeliveriesTable;
  webhook_attempts: WebhookAttemptsTable;
}

export type CaseRow = Selectable<CasesTable>;
export type FileRow = Selectable<FilesTable>;
export type ReaderRow = Selectable<ReadersTable>;
export type SiteRow = Selectable<SitesTable>;
export type RoutingRuleRow = Selectable<RoutingRulesTable>;
export type NewFile = Insertable<FilesTable>;
export type UploadSessionRow = Selectable<UploadSessionsTable>;
export type UploadBatchRow = Selectable<UploadBatchesTable>;
export type ReportRow = Selectable<ReportsTable>;
export type ReportAddendumRow = Selectable<ReportAddendaTable>;
export type WebhookDeliveryRow = Selectable<WebhookDeliveriesTable>;
export type WebhookAttemptRow = Selectable<WebhookAttemptsTable>;
