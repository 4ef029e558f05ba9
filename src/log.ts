import { type Logger, pino } from 'pino';

export type { Logger };

/**
 * Paths pino blanks before a line is written. Patient demographics never reach a log: we log UIDs, never
 * names. `patient` objects are dropped whole wherever they appear in a logged object.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  'key',
  'apiKey',
  'patient',
  '*.patient',
  '*.*.patient',
  'patientName',
  '*.patientName',
  'patientId',
  '*.patientId',
  'patientBirthDate',
  '*.patientBirthDate',
  'PatientName',
  '*.PatientName',
  'PatientID',
  '*.PatientID',
  'PatientBirthDate',
  '*.PatientBirthDate',
];

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
