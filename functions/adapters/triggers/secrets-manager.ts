import { RotateSecretCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { RotationTrigger } from '#core/ports/rotation-trigger.ts';
import { RekeyError, RotationInProgressError } from '#core/errors.ts';
import { redactCause } from '#core/redact.ts';

/**
 * On AWS a rotation is started with RotateSecret: Secrets Manager then invokes the rotate-secret
 * Lambda for each step, retries it, and refuses a second rotation while one is in progress.
 */
export class SecretsManagerRotationTrigger implements RotationTrigger {
  readonly mode = 'async' as const;

  constructor(private readonly client: SecretsManagerClient) {}

  async rotate(secretId: string): Promise<{ versionId?: string }> {
    try {
      const out = await this.client.send(new RotateSecretCommand({ SecretId: secretId, RotateImmediately: true }));
      return out.VersionId ? { versionId: out.VersionId } : {};
    } catch (error) {
      const name = (error as { name?: string }).name;
      // AWS says "A previous rotation isn't complete. That rotation will be reattempted."
      if (name === 'InvalidRequestException' && /in progress|(?:not|n't) complete/i.test((error as Error).message)) {
        throw new RotationInProgressError(secretId, 'Secrets Manager reports a rotation in progress');
      }
      throw new RekeyError('ROTATE_SECRET_FAILED', `Secrets Manager did not start a rotation of ${secretId} (${name ?? 'error'})`, {
        retryable: name === 'ThrottlingException' || name === 'InternalServiceError',
        cause: redactCause(error, []),
      });
    }
  }
}
