import { Type } from 'typebox';

export const ErrorBody = Type.Object(
  { error: Type.Object({ code: Type.String(), message: Type.String() }) },
  { $id: 'ErrorBody' },
);

export const Priority = Type.Union([Type.Literal('stat'), Type.Literal('urgent'), Type.Literal('routine')]);
export const CaseKind = Type.Union([Type.Literal('imaging'), Type.Literal('ecg'), Type.Literal('pathology')]);
export const CaseStatus = Type.Union(
  ['receiving', 'processing', 'ready', 'routed', 'reported', 'failed'].map((s) => Type.Literal(s)),
);
export const FileStatus = Type.Union(
  ['received', 'processing', 'processed', 'failed'].map((s) => Type.Literal(s)),
);

export const FileError = Type.Union([
  Type.Null(),
  Type.Object({ code: Type.String(), message: Type.String() }),
]);

export const FileSummary = Type.Object({
  id: Type.String(),
  name: Type.String(),
  bytes: Type.Number(),
  /** null in a de-identified view: the digest of the identified original would let it be matched. */
  sha256: Type.Union([Type.String(), Type.Null()]),
  format: Type.Union([Type.String(), Type.Null()]),
  status: Type.String(),
  error: FileError,
});

export const ArtifactSummary = Type.Object({
  name: Type.String(),
  contentType: Type.String(),
  bytes: Type.Number(),
  width: Type.Union([Type.Number(), Type.Null()]),
  height: Type.Union([Type.Number(), Type.Null()]),
  url: Type.String(),
});

export const CaseSummary = Type.Object({
  id: Type.String(),
  kind: Type.String(),
  status: Type.String(),
  priority: Type.String(),
  priorityReason: Type.Union([Type.String(), Type.Null()]),
  siteId: Type.String(),
  assignedReaderId: Type.Union([Type.String(), Type.Null()]),
  thumbnailUrl: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  routedAt: Type.Union([Type.String(), Type.Null()]),
});

export const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) });

/** Standard error responses, listed once for OpenAPI. */
export const errorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
} as const;
