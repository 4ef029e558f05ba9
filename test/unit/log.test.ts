import { Writable } from 'node:stream';
import { expect, test } from 'vitest';
import { createLogger } from '../../src/log.js';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { log: createLogger('info', stream), lines };
}

test.each([
  [
    'a patient object on a job log',
    { caseId: 'c1', patient: { name: 'DOE^JANE', id: 'MRN-991', birthDate: '19700101' } },
  ],
  [
    'patient fields nested one level',
    { file: { patientName: 'DOE^JANE', patientId: 'MRN-991', patientBirthDate: '19700101' } },
  ],
  [
    'DICOM keywords',
    { dataset: { PatientName: 'DOE^JANE', PatientID: 'MRN-991', PatientBirthDate: '19700101' } },
  ],
  ['an auth header on a request', { req: { headers: { authorization: 'Bearer trk_clinic_secret' } } }],
])('%s is redacted; ids that are not identities stay', (_label, obj) => {
  const { log, lines } = capture();
  log.info(obj, 'something happened');
  const out = lines.join('');
  for (const secret of ['DOE^JANE', 'MRN-991', '19700101', 'trk_clinic_secret'])
    expect(out).not.toContain(secret);
  expect(out).toContain('something happened');
  if ('caseId' in obj) expect(out).toContain('"caseId":"c1"');
});
