import { sql } from 'kysely';
import type { PoolTarget, RoutingRule } from '../domain/rules.js';
import { AppError } from '../errors.js';
import type { Db } from './database.js';
import type { RoutingRuleRow } from './schema.js';

/** Rules as stored, with their id and 1-based position. */
export type StoredRule = RoutingRule & { id: string; position: number };

function toStored(row: RoutingRuleRow): StoredRule {
  return {
    id: row.id,
    position: row.position,
    name: row.name,
    enabled: row.enabled,
    match: row.match,
    target: row.target,
    policy: row.policy,
    fallbacks: row.fallbacks as PoolTarget[],
    preferPriorReader: row.prefer_prior_reader,
  };
}

function toRow(rule: RoutingRule, position: number) {
  return {
    position,
    name: rule.name,
    enabled: rule.enabled,
    match: JSON.stringify(rule.match),
    target: JSON.stringify(rule.target),
    policy: rule.policy,
    fallbacks: JSON.stringify(rule.fallbacks),
    prefer_prior_reader: rule.preferPriorReader,
  };
}

export async function getRules(db: Db): Promise<StoredRule[]> {
  const rows = await db.selectFrom('routing_rules').selectAll().orderBy('position').execute();
  return rows.map(toStored);
}

/** Replaces the whole rule set in one transaction: routing sees the old set or the new one, never a mix. */
export async function replaceRules(db: Db, rules: readonly RoutingRule[]): Promise<StoredRule[]> {
  return db.transaction().execute(async (trx) => {
    await trx.deleteFrom('routing_rules').execute();
    if (rules.length > 0) {
      await trx
        .insertInto('routing_rules')
        .values(rules.map((r, i) => toRow(r, i + 1)))
        .execute();
    }
    return getRules(trx);
  });
}

/** Inserts a rule at a 1-based position (default: last); the rules from there on move down one. */
export async function insertRule(db: Db, rule: RoutingRule, position?: number): Promise<StoredRule> {
  return db.transaction().execute(async (trx) => {
    // Two inserts at once would compute the same positions; the table lock orders them.
    await sql`LOCK TABLE routing_rules IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
    const { count } = await trx
      .selectFrom('routing_rules')
      .select(sql<number>`count(*)::int`.as('count'))
      .executeTakeFirstOrThrow();
    const at = position ?? count + 1;
    if (!Number.isInteger(at) || at < 1 || at > count + 1) {
      throw new AppError('VALIDATION_FAILED', `position must be from 1 to ${count + 1}`);
    }
    await trx
      .updateTable('routing_rules')
      .set({ position: sql`position + 1`, updated_at: sql`now()` })
      .where('position', '>=', at)
      .execute();
    const row = await trx
      .insertInto('routing_rules')
      .values(toRow(rule, at))
      .returningAll()
      .executeTakeFirstOrThrow();
    return toStored(row);
  });
}

/** Deletes a rule; the rules after it move up one. */
export async function deleteRule(db: Db, id: string): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await sql`LOCK TABLE routing_rules IN SHARE ROW EXCLUSIVE MODE`.execute(trx);
    const gone = await trx
      .deleteFrom('routing_rules')
      .where('id', '=', id)
      .returning('position')
      .executeTakeFirst();
    if (!gone) throw new AppError('NOT_FOUND', `no routing rule ${id}`);
    await trx
      .updateTable('routing_rules')
      .set({ position: sql`position - 1`, updated_at: sql`now()` })
      .where('position', '>', gone.position)
      .execute();
  });
}
