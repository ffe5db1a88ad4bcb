/**
 * The non-secret handles the credential kinds trace in a leaked text (`CredentialKind.identifiersOfLeak`),
 * as plain functions of the text, for the leak-webhook Lambda: it queues them with the task but must
 * not build the kinds to find them — `kinds.ts` constructs the IAM client (and through the database
 * kind the targets), which would put the IAM and STS SDK clients into the webhook's bundle and cold
 * start (README, "Cold start"). This module imports nothing.
 *
 * Each function here answers exactly as its kind's `identifiersOfLeak`, and `identifyLeak` as
 * `identifiersOf(new CredentialKinds(), text)` (core/remediation.ts): test/unit/leak-identifiers.test.ts
 * checks both on generated texts, so a kind that learns a new handle fails there until it is added.
 */

/** Long-term IAM user keys start AKIA and are base32 (A–Z, 2–7); the secret that may follow is not. */
const AWS_ACCESS_KEY_ID = /(?<![A-Z0-9])AKIA[A-Z2-7]{16}/g;

/** `aws-iam-user`: the access key ids in `text`, each once. */
export function awsAccessKeyIdsIn(text: string): string[] {
  return [...new Set(text.match(AWS_ACCESS_KEY_ID) ?? [])];
}

/** Per engine family, what its kind traces (the kinds without `identifiersOfLeak` trace nothing). */
export const LEAK_IDENTIFIERS: readonly ((text: string) => string[])[] = [awsAccessKeyIdsIn];

/** At most this many handles per leaked value, as core/remediation.ts `identifiersOf`. */
const MAX_IDENTIFIERS = 10;

/** Every kind's handles in a leaked text, de-duplicated, at most 10: `IntakeDeps.identify` on AWS. */
export function identifyLeak(text: string): string[] {
  return [...new Set(LEAK_IDENTIFIERS.flatMap((identify) => identify(text)))].slice(0, MAX_IDENTIFIERS);
}
