/**
 * Exactly the Secrets Manager actions each function's role grants in serverless.yml, sorted.
 *
 * One list, checked from both sides: test/packaging/serverless-template.test.ts proves the packaged
 * template grants exactly these, and the AWS integration tests (rotate-secret, scheduled-rotation)
 * prove the code, run against the fake endpoint, calls no operation outside them — a call IAM would
 * refuse on AWS (as ListSecretVersionIds once was: describeSecret needs it) fails a test here.
 */
export const SECRETS_ACTIONS = {
  'rotate-secret': ['DescribeSecret', 'GetSecretValue', 'ListSecretVersionIds', 'PutSecretValue', 'TagResource', 'UntagResource', 'UpdateSecretVersionStage'],
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
  ops: ['DescribeSecret', 'GetSecretValue', 'ListSecretVersionIds', 'PutSecretValue', 'RotateSecret', 'TagResource', 'UntagResource', 'UpdateSecretVersionStage'],
  // Its own credentials secret only, by ARN (the leak-worker's GetSecretValue also covers the GitHub token secret).
  'leak-webhook': ['GetSecretValue'],
  'leak-worker': [
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
  'on-rekey-event': ['GetSecretValue'],
} as const satisfies Record<string, readonly string[]>;
