import { expect, test } from 'vitest';
import { derivedDateShift, derivedUid } from '../../src/cli/deidentify-command.js';

test('derived UIDs are valid 2.25 UIDs, stable per secret, different across secrets', () => {
  const a = derivedUid('secret-1', '1.2.3.4');
  expect(a).toMatch(/^2\.25\.(0|[1-9]\d*)$/);
  expect(a.length).toBeLessThanOrEqual(64);
  expect(derivedUid('secret-1', '1.2.3.4')).toBe(a);
  expect(derivedUid('secret-2', '1.2.3.4')).not.toBe(a);
  expect(derivedUid('secret-1', '1.2.3.5')).not.toBe(a);
});

test.each(['a', 'b', 'another secret', ''])(
  'date shift for secret %j is a whole number of days back, 1 to 3650',
  (secret) => {
    const d = derivedDateShift(secret);
    expect(Number.isInteger(d)).toBe(true);
    expect(d).toBeLessThanOrEqual(-1);
    expect(d).toBeGreaterThanOrEqual(-3650);
    expect(derivedDateShift(secret)).toBe(d);
  },
);
