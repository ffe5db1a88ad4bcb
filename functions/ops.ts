import * as z from 'zod/mini';
import { ValidationError } from '#core/errors.ts';
import { inspectSecret, type SecretStatus } from '#core/inspect.ts';
import { rotateNow, type RotateNowResult } from '#core/operations.ts';
import { revokeCredential, type RevokeResult } from '#core/revocation.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import { lambdaServices } from '#runtime/services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';

const secretId = z.string().check(z.minLength(1));
const reason = z.optional(z.string().check(z.maxLength(500)));
const eventSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('rotate'), secretId, reason }),
  z.object({
    action: z.literal('revoke'),
    secretId,
    reason,
    stage: z.optional(z.string()),
    versionId: z.optional(z.string()),
  }),
  z.object({ action: z.literal('inspect'), secretId }),
]);

export type OpsEvent = z.infer<typeof eventSchema>;
export type OpsResult =
  | { ok: true; action: 'rotate'; result: RotateNowResult }
  | { ok: true; action: 'revoke'; result: RevokeResult }
  | { ok: true; action: 'inspect'; result: SecretStatus };

/**
 * On-call by hand: `serverless invoke -f ops --path events/ops/rotate.json`. Same code path as the
 * CLI; failures come back as `{ ok: false, error: { code, message } }`; never a value.
 */
export const createHandler = (options: Partial<HandlerOptions> = {}) =>
  lambdaHandler<unknown, OpsResult>(
    'ops',
    async (raw, { services, logger }) => {
      const parsed = eventSchema.safeParse(raw);
      if (!parsed.success) {
        throw new ValidationError('expected {"action": "rotate" | "revoke" | "inspect", "secretId": "…", "reason": "…"}');
      }
      const event = parsed.data;
      logger.info('ops action', { action: event.action, secretId: event.secretId });
      const { deps, rotation } = services;
      if (event.action === 'inspect') return { ok: true, action: 'inspect', result: await inspectSecret(deps, event.secretId) };
      // The invoker's identity is not in a direct invoke's context: the audit names the function.
      const who = { actor: 'lambda:ops', ...(event.reason ? { reason: event.reason } : {}) };
      if (event.action === 'rotate') {
        return { ok: true, action: 'rotate', result: await rotateNow(deps, rotation, event.secretId, { trigger: 'manual', ...who }) };
      }
      const selector = event.versionId ? { versionId: event.versionId } : { stage: event.stage ?? STAGE.previous };
      return { ok: true, action: 'revoke', result: await revokeCredential(deps, event.secretId, { ...selector, trigger: 'manual', ...who }) };
    },
    { errors: 'return', services: lambdaServices, ...options },
  );

export const handler = createHandler();
