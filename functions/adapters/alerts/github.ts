import type { Octokit } from '@octokit/rest';
import { RekeyError } from '#core/errors.ts';
import type { LeakReport } from '#core/leak.ts';
import type { AlertApi } from '#core/ports/alert-api.ts';
import { redactCause } from '#core/redact.ts';
import { Sealed, seal } from '#core/sealed.ts';

type AlertRef = NonNullable<LeakReport['fetch']>;

/**
 * GitHub secret scanning's REST API: the webhook omits the leaked value, so it is read from
 * `GET /repos/{owner}/{repo}/secret-scanning/alerts/{number}`, and the alert is closed with
 * `PATCH … { state: resolved, resolution: revoked }` once rekey has revoked the credential.
 * The token needs `security_events` (or `repo`) and admin rights on the repository.
 */
export class GitHubAlertApi implements AlertApi {
  readonly #octokit: Octokit;

  constructor(options: { octokit: Octokit }) {
    this.#octokit = options.octokit;
  }

  async fetchLeakedValue(report: LeakReport): Promise<Sealed<string> | undefined> {
    const ref = report.fetch;
    if (ref?.kind !== 'github-alert') return undefined;
    let secret: unknown;
    try {
      const { data } = await this.#octokit.rest.secretScanning.getAlert({ owner: ref.owner, repo: ref.repo, alert_number: ref.alertNumber });
      secret = data.secret;
    } catch (error) {
      throw failure('read', ref, error);
    }
    return typeof secret === 'string' && secret.length > 0 ? seal(secret) : undefined;
  }

  async resolveAlert(report: LeakReport, comment: string): Promise<boolean> {
    const ref = report.fetch;
    if (report.source !== 'github' || ref?.kind !== 'github-alert') return false;
    const target = { owner: ref.owner, repo: ref.repo, alert_number: ref.alertNumber };
    try {
      await this.#octokit.rest.secretScanning.updateAlert({ ...target, state: 'resolved', resolution: 'revoked', resolution_comment: comment });
      return true;
    } catch (error) {
      // GitHub answers 400 when "the resolution was not changed": a re-delivery of an alert we
      // already resolved. Look (without the secret) before calling it a failure.
      if ((error as { status?: unknown }).status === 400 && (await this.#alreadyResolved(target))) return true;
      throw failure('resolve', ref, error);
    }
  }

  async #alreadyResolved(target: { owner: string; repo: string; alert_number: number }): Promise<boolean> {
    try {
      const { data } = await this.#octokit.rest.secretScanning.getAlert({ ...target, hide_secret: true });
      return data.state === 'resolved' && data.resolution === 'revoked';
    } catch {
      return false;
    }
  }
}

function failure(what: 'read' | 'resolve', ref: AlertRef, error: unknown): RekeyError {
  const status = (error as { status?: unknown } | undefined)?.status;
  const detail = typeof status === 'number' ? `HTTP ${status}` : 'no answer';
  const retryable = typeof status !== 'number' || status === 429 || status >= 500;
  // The cause keeps GitHub's message only; the RequestError's response (which may hold the alert) is dropped.
  return new RekeyError('ALERT_API_FAILED', `could not ${what} GitHub secret scanning alert ${ref.owner}/${ref.repo}#${ref.alertNumber} (${detail})`, {
    retryable,
    cause: redactCause(error, []),
  });
}
