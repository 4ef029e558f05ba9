import { readFile } from 'node:fs/promises';
import { parse, YAMLParseError } from 'yaml';
import type { Db } from '../db/database.js';
import { getRules, replaceRules, type StoredRule } from '../db/rule-queries.js';
import { parseRuleSet, poolIdOf } from '../domain/rules.js';
import { AppError } from '../errors.js';

/**
 * Reads a YAML rule set (`rules: [...]`, see fixtures/rules.yaml) and replaces the stored rules with it in one
 * transaction. Nothing is stored unless every rule validates.
 */
export async function loadRulesFile(db: Db, file: string): Promise<StoredRule[]> {
  const text = await readFile(file, 'utf8');
  let doc: unknown;
  try {
    doc = parse(text);
  } catch (err) {
    if (err instanceof YAMLParseError) throw new AppError('VALIDATION_FAILED', `${file}: ${err.message}`);
    throw err;
  }
  let rules: ReturnType<typeof parseRuleSet>;
  try {
    rules = parseRuleSet(doc);
  } catch (err) {
    if (err instanceof AppError) throw new AppError('VALIDATION_FAILED', `${file}: ${err.message}`);
    throw err;
  }
  return replaceRules(db, rules);
}

/** One line per rule, in evaluation order: what it matches, where it sends, how. */
export function formatRules(rules: readonly StoredRule[]): string {
  if (rules.length === 0)
    return 'no routing rules: every case is pushed to its kind’s specialty (built-in default)\n';
  return rules
    .map((r) => {
      const match = Object.entries(r.match)
        .map(([k, v]) =>
          k === 'metadata'
            ? Object.entries(v as Record<string, string[]>)
                .map(([mk, mv]) => `metadata.${mk}=${mv.join('|')}`)
                .join(' ')
            : `${k}=${(v as string[]).join('|')}`,
        )
        .join(' ');
      const fallbacks = r.fallbacks.length ? ` fallback ${r.fallbacks.map(poolIdOf).join(' → ')}` : '';
      return `${String(r.position).padStart(3)}. ${r.enabled ? '' : '(disabled) '}${r.name}\n     ${match || 'any case'} ⇒ ${r.policy} ${poolIdOf(r.target)}${fallbacks}${r.preferPriorReader ? '' : ' (no follow-up preference)'}\n`;
    })
    .join('');
}

export async function rulesCommand(db: Db, verb: string | undefined, args: string[], json: boolean) {
  switch (verb) {
    case 'load': {
      if (args.length !== 1) throw new AppError('VALIDATION_FAILED', 'usage: teleread rules load FILE.yaml');
      const stored = await loadRulesFile(db, args[0]!);
      return json ? `${JSON.stringify(stored)}\n` : `loaded ${stored.length} rule(s)\n${formatRules(stored)}`;
    }
    case 'list': {
      const stored = await getRules(db);
      return json ? `${JSON.stringify(stored)}\n` : formatRules(stored);
    }
    default:
      throw new AppError('VALIDATION_FAILED', 'usage: teleread rules load FILE.yaml | rules list [--json]');
  }
}
