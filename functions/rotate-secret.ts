import * as z from 'zod/mini';
import { RekeyError, ValidationError } from '#core/errors.ts';
import { STAGE } from '#core/ports/secret-store.ts';
import type { RotationStep } from '#core/rotation.ts';
import { lambdaServices } from '#runtime/services.ts';
import { lambdaHandler, type HandlerOptions } from '#runtime/middleware.ts';

/** The event Secrets Manager sends a rotation function. */
const eventSchema = z.object({
  Step: z.enum(['createSecret', 'setSecret', 'testSecret', 'finishSecret']),
  SecretId: z.string().check(z.minLength(1)),
  ClientRequestToken: z.string().check(z.minLength(1)),
  RotationToken: z.optional(z.string()),
});

export type RotateSecretEvent = z.infer<typeof eventSchema>;

/**
 * Secrets Manager sends the secret's full ARN (`…:secret:<name>-<6 random characters>`); everything
 * else in rekey — the sweep, ops, the CLI, leak matching — names a secret by its name, so the steps,
 * their events and the audit trail use the name too. Anything but a full ARN is kept as given.
 */
export function secretNameOf(secretId: string): string {
  const match = /^arn:[\w-]+:secretsmanager:[\w-]+:\d{12}:secret:(.+)-[A-Za-z0-9]{6}$/.exec(secretId);
  return match ? match[1]! : secretId;
}

/**
 * Secrets Manager's rotation Lambda contract, checked the way AWS's own templates check it, then
 * the rekey step. Each step is idempotent by ClientRequestToken, so AWS's retries are safe.
 */
export const createHandler = (options: Partial<HandlerOptions> = {}) =>
  lambdaHandler<unknown, { step: RotationStep; secretId: string; versionId: string; outcome: 'done' | 'already-current' }>(
    'rotate-secret',
    async (raw, { services, logger }) => {
      const parsed = eventSchema.safeParse(raw);
      if (!parsed.success) throw new ValidationError('not a Secrets Manager rotation event (Step, SecretId, ClientRequestToken)');
      const { Step: step, ClientRequestToken: token } = parsed.data;
      const secretId = secretNameOf(parsed.data.SecretId);
      const { store } = services.deps;

      const description = await store.describeSecret(secretId);
      if (!description.rotationEnabled) throw new RekeyError('ROTATION_NOT_ENABLED', `secret ${secretId} does not have rotation enabled`);
      const version = description.versions.find((v) => v.versionId === token);
      if (!version) throw new RekeyError('TOKEN_NOT_A_VERSION', `version ${token} has no stage for rotation of secret ${secretId}`);
      if (version.stages.includes(STAGE.current)) {
        logger.info('version already current', { secretId, versionId: token, step });
        return { step, secretId, versionId: token, outcome: 'already-current' };
      }
      if (!version.stages.includes(STAGE.pending)) {
        throw new RekeyError('TOKEN_NOT_PENDING', `version ${token} of secret ${secretId} is not set as AWSPENDING for rotation`);
      }
      await services.rotation.runStep(step, secretId, token, { trigger: 'schedule', actor: 'lambda:rotate-secret' });
      return { step, secretId, versionId: token, outcome: 'done' };
    },
    { errors: 'throw', services: lambdaServices, ...options },
  );

export const handler = createHandler();
