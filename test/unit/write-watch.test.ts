import { expect, test } from 'vitest';
import { tablesWrittenBy } from '../../src/db/write-watch.js';

test.each([
  ['select * from "cases" where "id" = $1', []],
  ['select "id" from "readers" where "id" = $1 for update', []],
  ['select "cases"."id" from "cases" where "id" = $1 for update of "cases"', ['of']],
  [
    'update "cases" set "lease_reader_id" = $1 where "cases"."id" = $2 returning "lease_expires_at"',
    ['cases'],
  ],
  ['insert into "audit_events" ("action") values ($1)', ['audit_events']],
  [
    'insert into "readers" ("id") values ($1) on conflict ("id") do update set "name" = excluded."name"',
    ['readers', 'set'],
  ],
  ['delete from "public"."api_keys" where "id" = $1', ['api_keys']],
  ['UPDATE api_keys SET revoked_at = now()', ['api_keys']],
  ['TRUNCATE TABLE assignments', ['assignments']],
  ['with moved as (update cases set status = $1 returning id) select count(*) from moved', ['cases']],
  // A value that merely mentions an action is not a write.
  ["select * from audit_events where action = 'case.updated'", []],
])('tablesWrittenBy(%j)', (statement, tables) => {
  expect(tablesWrittenBy(statement)).toEqual(tables);
});
