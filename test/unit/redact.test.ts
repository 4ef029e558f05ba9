import { describe, expect, test } from 'vitest';
import type { Principal } from '../../src/api/auth.js';
import {
  deidentifiedArtifactName,
  mayseeIdentified,
  needsDeidentifiedView,
  redactFileMetadata,
} from '../../src/api/redact.js';

const who = (role: Principal['role']): Principal => ({ keyId: 'k', role, siteId: null, readerId: null });

describe('who sees what', () => {
  test.each<[Principal['role'], boolean, boolean, boolean]>([
    ['clinic', true, true, false],
    ['admin', true, true, false],
    ['ops', true, false, false],
    ['reader', true, true, false],
    ['reader', false, false, true],
  ])('%s (identified_view %s): identified %s, de-identified view %s', (role, view, identified, deid) => {
    expect(mayseeIdentified(who(role), { identified_view: view })).toBe(identified);
    expect(needsDeidentifiedView(who(role), { identified_view: view })).toBe(deid);
  });
});

describe('redactFileMetadata', () => {
  const remap = new Map([
    ['1.2.3', '2.25.9'],
    ['1.2.4', '2.25.8'],
  ]);
  test.each<[string, Record<string, unknown>, Record<string, unknown>]>([
    [
      'DICOM: dates, descriptions and unmapped UIDs go; mapped UIDs are replaced',
      {
        modality: 'CT',
        rows: 8,
        studyDate: '20240301',
        studyDescription: 'CT head Doe',
        seriesDescription: 'Doe axial',
        accessionNumber: 'A1',
        studyInstanceUid: '1.2.3',
        seriesInstanceUid: '1.2.4',
        sopInstanceUid: '1.2.5',
      },
      { modality: 'CT', rows: 8, studyInstanceUid: '2.25.9', seriesInstanceUid: '2.25.8' },
    ],
    [
      'ECG: device, record and companion names go; triage keeps no free-text reason',
      {
        leads: ['I', 'II'],
        samplingFrequency: 500,
        device: 'MAC 5500 at St Mary',
        record: 'doe_john',
        companions: ['doe_john.dat'],
        triage: { heartRate: 72, flags: [], quality: 'good', priority: null, reason: 'x' },
      },
      {
        leads: ['I', 'II'],
        samplingFrequency: 500,
        triage: { heartRate: 72, flags: [], quality: 'good', priority: null },
      },
    ],
    [
      'slide: scan date and associated images go',
      { levels: [{ width: 1 }], mppX: 0.25, scanDate: '2024-03-01', associated: [{ name: 'label' }] },
      { levels: [{ width: 1 }], mppX: 0.25 },
    ],
    ['an unknown key is dropped, not passed through', { patientName: 'Doe', somethingNew: 1 }, {}],
  ])('%s', (_name, input, expected) => {
    expect(redactFileMetadata(input, remap)).toEqual(expected);
  });

  test('series artifacts are renamed after the replacement UID', () => {
    expect(deidentifiedArtifactName('series-1.2.4.webp', remap)).toBe('series-2.25.8.webp');
    expect(deidentifiedArtifactName('series-1.9.webp', remap)).toBe('series-unknown.webp');
    expect(deidentifiedArtifactName('thumbnail', remap)).toBe('thumbnail');
  });
});
