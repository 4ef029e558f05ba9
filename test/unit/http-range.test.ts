import { describe, expect, test } from 'vitest';
import { answerRange } from '../../src/api/http-range.js';

const TAG = '"abc-100"';

describe('answerRange: one byte range of an HTTP Range header', () => {
  test.each([
    ['bytes=0-9', { kind: 'part', start: 0, end: 9 }],
    ['bytes=90-', { kind: 'part', start: 90, end: 99 }],
    ['bytes=-10', { kind: 'part', start: 90, end: 99 }],
    ['bytes=-1000', { kind: 'part', start: 0, end: 99 }],
    ['bytes=50-5000', { kind: 'part', start: 50, end: 99 }],
    ['Bytes=1-2', { kind: 'part', start: 1, end: 2 }],
    ['bytes=99-99', { kind: 'part', start: 99, end: 99 }],
    ['bytes=100-', { kind: 'unsatisfiable' }],
    ['bytes=-0', { kind: 'unsatisfiable' }],
    ['bytes=9-1', { kind: 'whole' }],
    ['bytes=-', { kind: 'whole' }],
    ['bytes=0-1,5-6', { kind: 'whole' }],
    ['items=0-1', { kind: 'whole' }],
    ['bytes=abc', { kind: 'whole' }],
  ] as const)('%s of 100 bytes', (header, expected) => {
    expect(answerRange(header, 100, TAG)).toEqual(expected);
  });

  test('no Range header: the whole', () => {
    expect(answerRange(undefined, 100, TAG)).toEqual({ kind: 'whole' });
  });

  test('If-Range: the range only while the tag still holds', () => {
    expect(answerRange('bytes=10-', 100, TAG, TAG)).toEqual({ kind: 'part', start: 10, end: 99 });
    expect(answerRange('bytes=10-', 100, TAG, '"other"')).toEqual({ kind: 'whole' });
    expect(answerRange('bytes=10-', 100, TAG, 'Wed, 21 Oct 2026 07:28:00 GMT')).toEqual({ kind: 'whole' });
  });
});
