import { Type } from 'typebox';
import type { Context } from '../../context.js';
import { deleteRule, getRules, insertRule, replaceRules, type StoredRule } from '../../db/rule-queries.js';
import { parseRule, parseRuleSet } from '../../domain/rules.js';
import { type Principal, principalOf, requireRole } from '../auth.js';
import type { App } from '../build-app.js';
import { ErrorBody, errorResponses } from '../schemas.js';

const TextOrList = Type.Union([
  Type.String({ minLength: 1 }),
  Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
]);
const Scalar = Type.Union([Type.String(), Type.Number(), Type.Boolean()]);

const PoolTarget = Type.Object(
  {
    specialty: Type.Union([Type.Literal('cardiology'), Type.Literal('radiology'), Type.Literal('pathology')]),
    subspecialty: Type.Optional(Type.String()),
    language: Type.Optional(Type.String()),
    jurisdiction: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);

/** What clients send: scalars or lists; the domain parser normalises and checks the rest (subspecialty of
 * specialty, codes). */
const RuleInput = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    enabled: Type.Optional(Type.Boolean()),
    match: Type.Optional(
      Type.Object(
        {
          kind: Type.Optional(TextOrList),
          modality: Type.Optional(TextOrList),
          bodyPart: Type.Optional(TextOrList),
          site: Type.Optional(TextOrList),
          priority: Type.Optional(TextOrList),
          flags: Type.Optional(TextOrList),
          metadata: Type.Optional(
            Type.Record(Type.String(), Type.Union([Scalar, Type.Array(Scalar, { minItems: 1 })])),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    target: PoolTarget,
    policy: Type.Optional(Type.Union([Type.Literal('push'), Type.Literal('pull')])),
    fallbacks: Type.Optional(Type.Array(PoolTarget, { maxItems: 10 })),
    preferPriorReader: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const List = Type.Array(Type.String());
const StoredRuleSchema = Type.Object({
  id: Type.String(),
  position: Type.Integer(),
  name: Type.String(),
  enabled: Type.Boolean(),
  match: Type.Object({
    kind: Type.Optional(List),
    modality: Type.Optional(List),
    bodyPart: Type.Optional(List),
    site: Type.Optional(List),
    priority: Type.Optional(List),
    flags: Type.Optional(List),
    metadata: Type.Optional(Type.Record(Type.String(), List)),
  }),
  target: PoolTarget,
  policy: Type.String(),
  fallbacks: Type.Array(PoolTarget),
  preferPriorReader: Type.Boolean(),
});

const RuleList = Type.Object({ rules: Type.Array(StoredRuleSchema) });

/**
 * Routing rules, an ordered list: the first enabled rule that matches a case decides its pool and policy.
 * Admins change them; ops may read them. Changes apply to cases routed afterwards, not to routed ones.
 */
export function registerRulesRoutes(app: App, ctx: Context): void {
  const { db } = ctx;
  const adminOnly = requireRole(db, 'admin');
  const audit = (who: Principal, requestId: string, action: string, detail: Record<string, unknown>) =>
    db
      .insertInto('audit_events')
      .values({
        action,
        actor_key_id: who.keyId,
        actor_role: who.role,
        request_id: requestId,
        detail: JSON.stringify(detail),
      })
      .execute();
  const out = (rules: StoredRule[]) => ({ rules });

  app.get(
    '/v1/rules',
    {
      onRequest: requireRole(db, 'ops', 'admin'),
      schema: {
        summary: 'The routing rules, in evaluation order',
        response: { 200: RuleList, ...errorResponses },
      },
    },
    async () => out(await getRules(db)),
  );

  app.put(
    '/v1/rules',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Replace the whole rule set (atomically)',
        body: Type.Object(
          { rules: Type.Array(RuleInput, { maxItems: 1000 }) },
          { additionalProperties: false },
        ),
        response: { 200: RuleList, ...errorResponses },
      },
    },
    async (request) => {
      const rules = parseRuleSet(request.body);
      const stored = await replaceRules(db, rules);
      await audit(principalOf(request), request.id, 'rules.replaced', { count: stored.length });
      return out(stored);
    },
  );

  app.post(
    '/v1/rules',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Insert one rule at a 1-based position (default: last)',
        body: Type.Object(
          { rule: RuleInput, position: Type.Optional(Type.Integer({ minimum: 1 })) },
          { additionalProperties: false },
        ),
        response: { 201: StoredRuleSchema, ...errorResponses },
      },
    },
    async (request, reply) => {
      const body = request.body as { rule: unknown; position?: number };
      const stored = await insertRule(db, parseRule(body.rule), body.position);
      await audit(principalOf(request), request.id, 'rules.inserted', {
        id: stored.id,
        name: stored.name,
        position: stored.position,
      });
      return reply.status(201).send(stored);
    },
  );

  app.delete(
    '/v1/rules/:id',
    {
      onRequest: adminOnly,
      schema: {
        summary: 'Delete one rule; the rules after it move up',
        params: Type.Object({ id: Type.String({ format: 'uuid' }) }),
        response: { 204: Type.Null(), ...errorResponses, 404: ErrorBody },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      await deleteRule(db, id);
      await audit(principalOf(request), request.id, 'rules.deleted', { id });
      return reply.status(204).send(null);
    },
  );
}
