/**
 * Exactly the Secrets Manager actions each function's role grants in serverless.yml, sorted.
 *
 * One list, checked from both sides: test/packaging/serverless-template.test.ts proves the packaged
 * template grants exactly these, and the AWS integration tests (rotate-secret, scheduled-rotation,
 * ops, leak-worker) prove the code, run against the fake endpoint, calls no operation outside them
 * — a call IAM would refuse on AWS (as ListSecretVersionIds once was: describeSecret needs it) fails
 * a test here.
 */
export const SECRETS_ACTIONS = {
  'rotate-secret': ['DescribeSecret', 'GetSecretValue', 'ListSecretVersionIds', 'PutSecretValue', 'TagResource', 'UntagResource', 'UpdateSecretVersionStage'],
  // The only caller of RotateSecret: due secrets are rotated by Secrets Manager through rotate-secret.
  'scheduled-rotation': [
    'DescribeSecret',
    'GetSecretValue',
    'ListSecretVersionIds',
    'ListSecrets',
    'PutSecretValue',
    'RotateSecret',
    'TagResource',
    'UntagResource',
    'UpdateSecretVersionStage',
  ],
  // Runs the four steps in-process (rotateNow), as the CLI does: no RotateSecret.
  ops: ['DescribeSecret', 'GetSecretValue', 'ListSecretVersionIds', 'PutSecretValue', 'TagResource', 'UntagResource', 'UpdateSecretVersionStage'],
  // Its own credentials secret only, by ARN.
  'leak-webhook': ['GetSecretValue'],
  // ListSecrets: the fingerprint lookup. Rotates in-process on a leak: no RotateSecret.
  'leak-worker': ['DescribeSecret', 'GetSecretValue', 'ListSecretVersionIds', 'ListSecrets', 'PutSecretValue', 'TagResource', 'UntagResource', 'UpdateSecretVersionStage'],
  'on-rekey-event': ['GetSecretValue'],
} as const satisfies Record<string, readonly string[]>;

export type LambdaFunctionName = keyof typeof SECRETS_ACTIONS;

/**
 * The tag keys the roles may write (serverless.yml `tagManaged`, `ForAllValues:StringLike
 * aws:TagKeys`), checked from both sides like SECRETS_ACTIONS: a tag rekey writes outside them
 * would be refused on AWS.
 */
export const TAG_KEYS = ['rekey:fp:*', 'rekey:last-outcome*', 'rekey:consumers', 'rekey:purge', 'rekey:session-watermark'] as const;

/**
 * The functions whose role may read the GitHub token secret `rekey/<stage>/github-token` (GetSecretValue
 * by ARN, serverless.yml `readGitHubToken`): every function that pushes a rotated value to GitHub Actions
 * consumers, and the leak worker (alerts, tickets). Sorted.
 */
export const GITHUB_TOKEN_READERS = ['leak-worker', 'ops', 'rotate-secret', 'scheduled-rotation'] as const satisfies readonly LambdaFunctionName[];
