import type { LeakSource } from '#core/leak.ts';
import type { Scanner } from '#core/ports/scanner.ts';
import { GitHubScanner } from './github.ts';
import { GitGuardianScanner } from './gitguardian.ts';
import { TruffleHogScanner } from './trufflehog.ts';
import { GitleaksScanner } from './gitleaks.ts';

export interface ScannerConfig {
  githubWebhookSecret?: string;
  gitguardianWebhookSecret?: string;
  /** One CI token for both report-posting scanners (TruffleHog and Gitleaks). */
  ingestToken?: string;
}

export const KNOWN_SCANNERS: ReadonlySet<LeakSource> = new Set<LeakSource>(['github', 'gitguardian', 'trufflehog', 'gitleaks']);

/** A name from a URL path: known scanners get 503 when unconfigured, unknown ones 404. */
export const isKnownScanner = (name: string): name is LeakSource => KNOWN_SCANNERS.has(name as LeakSource);

/** Only the scanners whose secret is configured: an unconfigured one must never accept a delivery. */
export function scannerRegistry(config: ScannerConfig): Map<LeakSource, Scanner> {
  const scanners = new Map<LeakSource, Scanner>();
  if (config.githubWebhookSecret) scanners.set('github', new GitHubScanner({ webhookSecret: config.githubWebhookSecret }));
  if (config.gitguardianWebhookSecret) scanners.set('gitguardian', new GitGuardianScanner({ webhookSecret: config.gitguardianWebhookSecret }));
  if (config.ingestToken) {
    scanners.set('trufflehog', new TruffleHogScanner({ ingestToken: config.ingestToken }));
    scanners.set('gitleaks', new GitleaksScanner({ ingestToken: config.ingestToken }));
  }
  return scanners;
}
