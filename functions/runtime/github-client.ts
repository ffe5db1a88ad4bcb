import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { Octokit } from '@octokit/rest';
import type { Logger } from '#core/ports/logger.ts';
import type { GitHubClientSource } from '#adapters/consumers/github-actions.ts';
import type { Config } from './config.ts';
import { githubTokenSource } from './leak-credentials.ts';

/**
 * A GitHub client whose own log goes through rekey's structured logger: its request lines name
 * method, path and status only; an expected 400 (an alert already resolved) is not worth more than
 * debug. Octokit is a deferred module in the Lambda bundles (README, "Cold start"): building one
 * loads it.
 */
export function githubOctokit(token: string, config: Pick<Config, 'GITHUB_API_URL'>, logger: Logger): Octokit {
  return new Octokit({
    auth: token,
    baseUrl: config.GITHUB_API_URL,
    log: {
      debug: () => {},
      info: () => {},
      warn: (message: string) => logger.warn('GitHub client warning', { message: String(message).slice(0, 300) }),
      error: (message: string) => logger.debug('GitHub request failed', { request: String(message).slice(0, 300) }),
    },
  });
}

/**
 * GitHub for the `github-actions` consumers (ConsumerAdapters' `octokit`): GITHUB_TOKEN, or on AWS
 * the token in the secret REKEY_GITHUB_TOKEN_SECRET_ID names — read only when a value being pushed
 * lists a GitHub consumer, re-read every 5 minutes (runtime/leak-credentials.ts `githubTokenSource`);
 * the client is rebuilt only when the token changed. Without a token the push fails with
 * CONFIG_INVALID naming `tokenSetting`, which the rotation records as a failed push (the revoke of
 * the previous value waits; the sweep pushes again).
 */
export function consumerGitHub(
  config: Pick<Config, 'GITHUB_TOKEN' | 'REKEY_GITHUB_TOKEN_SECRET_ID' | 'GITHUB_API_URL' | 'AWS_REGION'>,
  logger: Logger,
  secretsManager?: SecretsManagerClient,
  options: { clock?: () => number } = {},
): { octokit: GitHubClientSource; tokenSetting: string } {
  let client = secretsManager;
  const token = githubTokenSource(config, () => (client ??= new SecretsManagerClient(config.AWS_REGION ? { region: config.AWS_REGION } : {})), options);
  let built: { token: string; octokit: Octokit } | undefined;
  return {
    octokit: async () => {
      const current = await token();
      if (!current) return undefined;
      if (built?.token !== current) built = { token: current, octokit: githubOctokit(current, config, logger) };
      return built.octokit;
    },
    tokenSetting:
      config.GITHUB_TOKEN || !config.REKEY_GITHUB_TOKEN_SECRET_ID ? 'GITHUB_TOKEN' : '"githubToken" in the secret REKEY_GITHUB_TOKEN_SECRET_ID names (rekey/<stage>/github-token)',
  };
}
